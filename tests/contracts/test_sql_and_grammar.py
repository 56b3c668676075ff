"""``Grammar`` and ``Sql`` contracts: declaration, validation by an independent parser
(lark, sqlglot), identifiers and statement kinds, stored specs, bad input."""

from __future__ import annotations

import sqlite3

import pytest
from llguidance import LLMatcher

from modelladder import ContractError, Grammar, Sql
from modelladder.contracts import contract_from_spec

SCHEMA = {"orders": ["id", "customer", "total", "status"], "customers": ["id", "name", "city"]}
DDL = """
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL, status TEXT);
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT);
"""


# -- Grammar ---------------------------------------------------------------------------------

YES_NO = 'start: answer "."?\nanswer: "yes" | "no" | "maybe" WORD\nWORD: /[a-z]+/\n%ignore " "'


def test_grammar_validates_with_lark_not_the_decoder() -> None:
    g = Grammar(YES_NO, description="A short answer.")
    assert g.validate("yes.").ok and g.validate("  no ").value == "no"
    assert g.validate("maybe later").ok
    bad = g.validate("yes please")
    assert not bad.ok and bad.reason == "grammar_mismatch" and "does not parse" in bad.detail
    assert "A short answer." in g.instructions() and "answer:" in g.instructions()
    assert LLMatcher.validate_grammar(g.grammar()) == ""
    again = contract_from_spec({"kind": "grammar", "spec": g.spec()})
    assert again.digest() == g.digest() and isinstance(again, Grammar)


def test_grammar_with_another_start_rule() -> None:
    g = Grammar('answer: "A" | "B"', start="answer")
    assert g.validate("B").ok and not g.validate("C").ok


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "needs Lark grammar text"),
        ("start: undefined_rule", "lark package cannot read"),
        ('start: "a" +++', "lark package cannot read"),
        ("start: A\nA: /a(?=b)/", "by llguidance"),  # lark reads look-ahead, llguidance does not
    ],
)
def test_bad_grammars_are_refused_at_declaration(text: str, match: str) -> None:
    with pytest.raises(ContractError, match=match):
        Grammar(text)


# -- Sql: declaration ------------------------------------------------------------------------


def test_the_schema_comes_from_a_dict_ddl_or_a_connection() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(DDL)
    for source in (SCHEMA, DDL, conn):
        assert Sql(source).tables == SCHEMA or Sql(source).tables == dict(sorted(SCHEMA.items()))
    assert Sql(None, connection=conn, explain=True).tables["orders"] == SCHEMA["orders"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"schema": "CREATE TABLE (oops"}, "does not parse"),
        ({"schema": {}}, "no tables"),
        ({"schema": "SELECT 1"}, "no tables"),
        ({"schema": {"t": []}}, "have no columns"),
        ({"schema": {"t": "a,b"}}, "list of column names"),
        ({"schema": 42}, "must be DDL text"),
        ({"schema": SCHEMA, "dialect": "klingon"}, "does not know the dialect"),
        ({"schema": SCHEMA, "allow": ("select", "drop")}, "allow must name"),
        ({"schema": SCHEMA, "max_rows": 0}, "max_rows must be a positive integer"),
        ({"schema": SCHEMA, "explain": True}, "explain=True needs connection"),
    ],
)
def test_bad_declarations_get_one_clear_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ContractError, match=match):
        Sql(**kwargs)


# -- Sql: validation -------------------------------------------------------------------------

SQL = Sql(SCHEMA, max_rows=50)


@pytest.mark.parametrize(
    "text",
    [
        "SELECT customer, total FROM orders WHERE total > 100 LIMIT 10",
        "select name from customers limit 5;",
        "SELECT c.name, SUM(o.total) AS spent FROM orders AS o JOIN customers c ON o.customer = c.name "
        "GROUP BY c.name ORDER BY spent DESC LIMIT 3",
        "SELECT COUNT(*) FROM orders WHERE status IN ('paid', 'sent') LIMIT 1",
    ],
)
def test_valid_statements_pass(text: str) -> None:
    v = SQL.validate(text)
    assert v.ok, v.detail
    assert v.value == text.strip().rstrip(";")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("SELECT nope FROM orders LIMIT 5", "sql_unknown_column"),
        ("SELECT city FROM orders LIMIT 5", "sql_unknown_column"),  # a column of another table
        ("SELECT x.total FROM orders o LIMIT 5", "sql_unknown_table"),
        ("SELECT * FROM users LIMIT 5", "sql_unknown_table"),
        ("DELETE FROM orders", "sql_kind_not_allowed"),
        ("UPDATE orders SET total = 0", "sql_kind_not_allowed"),
        ("SELECT id FROM orders", "sql_row_limit"),
        ("SELECT id FROM orders LIMIT 500", "sql_row_limit"),
        ("SELECT id FROM orders LIMIT 5; SELECT id FROM customers LIMIT 5", "sql_parse_error"),
        ("SELEC id FROM", "sql_parse_error"),
        ("", "empty_output"),
    ],
)
def test_invalid_statements_are_refused_with_the_reason(text: str, reason: str) -> None:
    v = SQL.validate(text)
    assert not v.ok and v.reason == reason, (v.reason, v.detail)


def test_writes_only_when_allowed() -> None:
    rw = Sql(SCHEMA, allow=("select", "insert", "update", "delete"))
    assert rw.validate("UPDATE orders SET status = 'void' WHERE id = 3").ok
    assert rw.validate("INSERT INTO customers (id, name, city) VALUES (1, 'Ann', 'Oslo')").ok
    assert rw.validate("DELETE FROM orders WHERE total < 0").ok
    assert not rw.validate("UPDATE orders SET colour = 'red'").ok
    assert not rw.validate("CREATE TABLE t (a INT)").ok


def test_explain_asks_the_database_and_never_runs_the_statement() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(DDL + "INSERT INTO orders VALUES (1, 'Ann', 10.0, 'paid');")
    checked = Sql(None, connection=conn, explain=True, allow=("select", "delete"))
    assert checked.validate("DELETE FROM orders WHERE id = 1").ok
    assert conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 1  # EXPLAIN only
    bad = checked.validate("SELECT total FROM orders WHERE total > frobnicate(1)")  # no such function
    assert not bad.ok and bad.reason == "sql_explain_failed"


def test_the_decoding_grammar_admits_what_validation_refuses() -> None:
    """The grammar cannot know which column belongs to which table: validation, not the
    decoder, is the authority (an independent parser catches what the grammar lets by)."""
    import lark

    decoding = lark.Lark(SQL.grammar_text, parser="earley")
    for text in ("SELECT city FROM orders LIMIT 5", "SELECT total FROM customers LIMIT 5"):
        decoding.parse(f"```sql\n{text}\n```")  # admitted by the decoding grammar (in its fence)...
        assert SQL.validate(f"```sql\n{text}\n```").reason == "sql_unknown_column"  # ...refused
    with pytest.raises(lark.exceptions.LarkError):
        decoding.parse("```sql\nSELECT * FROM users LIMIT 5\n```")  # unknown tables cannot even be decoded
    assert (
        SQL.validate("```sql\nSELECT id FROM orders LIMIT 5;\n```").value == "SELECT id FROM orders LIMIT 5"
    )


def test_equivalence_and_stored_spec() -> None:
    assert SQL.equivalent("select id from orders limit 5", "SELECT id\nFROM orders LIMIT 5;")
    assert SQL.equivalent("```sql\nselect id from orders limit 5\n```", "SELECT id FROM orders LIMIT 5")
    assert Sql("CREATE TABLE t (a, b)").tables == {"t": ["a", "b"]}  # DDL without column types
    assert not SQL.equivalent("SELECT id FROM orders LIMIT 5", "SELECT id FROM orders LIMIT 6")
    again = contract_from_spec({"kind": "sql", "spec": SQL.spec()})
    assert isinstance(again, Sql) and again.digest() == SQL.digest() and again == SQL
    assert "orders(id, customer, total, status)" in SQL.instructions() and "at most 50" in SQL.instructions()
