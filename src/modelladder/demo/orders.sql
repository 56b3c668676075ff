-- The demo shop's orders: the database the demo's SQL step is decoded against.
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    status TEXT NOT NULL,  -- open, paid, shipped, refunded
    total REAL NOT NULL,
    placed_on TEXT NOT NULL
);
INSERT INTO customers VALUES (1, 'Ada Byron', 'London'), (2, 'Jonas Berg', 'Oslo'),
    (3, 'Mira Chen', 'Oslo'), (4, 'Luis Ortega', 'Madrid');
INSERT INTO orders VALUES
    (101, 1, 'paid', 120.50, '2026-11-02'), (102, 2, 'open', 35.00, '2026-11-05'),
    (103, 3, 'shipped', 89.90, '2026-11-07'), (104, 1, 'refunded', 15.00, '2026-11-09'),
    (105, 4, 'open', 240.00, '2026-11-12'), (106, 2, 'paid', 60.00, '2026-11-15'),
    (107, 3, 'paid', 12.75, '2026-11-20');
