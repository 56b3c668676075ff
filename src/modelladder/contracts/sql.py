"""``Sql``: the output is one SQL statement over a known schema, of an allowed kind.

The "SQL templates" step of an agent. A JSON schema cannot say what matters here: the
statement must parse in the target dialect, name only tables and columns that exist, stay
within what the step allows (read-only, a row limit) and, where a database is at hand, be
accepted by it. So:

* **decoding** is constrained by a grammar of a SQL subset (SELECT with joins, WHERE,
  GROUP BY, HAVING, ORDER BY, LIMIT; INSERT/UPDATE/DELETE/CREATE TABLE only when allowed)
  whose table and column terminals are the schema's own names (:mod:`._sql_grammar`);
* **validation** never trusts that grammar: ``sqlglot`` parses the text in the dialect,
  every table and column is resolved against the schema (aliases and select-list names
  included), the statement kind must be allowed and, with ``max_rows``, a SELECT must carry a
  ``LIMIT`` no larger; with ``explain=True`` and a connection, the database itself must
  accept an ``EXPLAIN`` of it (never executed).

Why sqlglot: a maintained SQL parser for 30 dialects with a typed expression tree; writing a
parser per dialect is exactly what not to do. The schema is DDL text, a live SQLite
connection (or a PostgreSQL DB-API connection, read from ``information_schema``), or a dict
of tables to columns.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from llguidance import LLMatcher
from sqlglot import exp

from modelladder.contracts._common import ensure_grammar
from modelladder.contracts._sql_grammar import KINDS, sql_grammar
from modelladder.contracts.base import Contract, ContractError, Verdict

__all__ = ["Sql", "schema_from"]

_KIND_OF: dict[type, str] = {
    exp.Select: "select",
    exp.Union: "select",
    exp.Insert: "insert",
    exp.Update: "update",
    exp.Delete: "delete",
    exp.Create: "create",
}


_KIND_USE = {
    "select": "SELECT to read rows",
    "insert": "INSERT INTO to add rows",
    "update": "UPDATE to change rows",
    "delete": "DELETE FROM to remove rows",
    "create": "CREATE TABLE for a new table",
}


_FENCE = re.compile(r"\A\s*```(?:sql)?[ \t]*\n?(.*?)\n?```\s*\Z", re.S | re.I)


def _unfenced(text: str) -> str:
    """The statement inside a Markdown code fence (how the decoder writes it), or the text."""
    m = _FENCE.match(text)
    return m.group(1) if m else text


def _dialect(name: str) -> str:
    try:
        sqlglot.Dialect.get_or_raise(name)
    except (ValueError, KeyError) as exc:
        raise ContractError(
            f"Sql: sqlglot does not know the dialect {name!r} ({exc}); use e.g. 'sqlite' or 'postgres'"
        ) from None
    return name


def _from_ddl(ddl: str, dialect: str) -> dict[str, list[str]]:
    try:
        statements = [s for s in sqlglot.parse(ddl, read=dialect) if s is not None]
    except sqlglot.errors.ParseError as exc:
        first = str(exc).splitlines()[0]
        raise ContractError(
            f"Sql: the schema DDL does not parse as {dialect} ({first}); pass CREATE TABLE statements"
        ) from None
    tables: dict[str, list[str]] = {}
    for st in statements:
        if isinstance(st, exp.Create) and isinstance(st.this, exp.Schema):
            cols = [c.name for c in st.this.expressions if isinstance(c, exp.ColumnDef | exp.Identifier)]
            tables[st.this.this.name] = cols
    return tables


def _from_connection(conn: Any, dialect: str) -> dict[str, list[str]]:
    if isinstance(conn, sqlite3.Connection):
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )]  # fmt: skip
        return {n: [r[1] for r in conn.execute(f'PRAGMA table_info("{n}")')] for n in names}
    cur = conn.cursor()  # any DB-API connection with information_schema (PostgreSQL)
    cur.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    )
    tables: dict[str, list[str]] = {}
    for table, column in cur.fetchall():
        tables.setdefault(table, []).append(column)
    return tables


def schema_from(schema: Any, dialect: str = "sqlite") -> dict[str, list[str]]:
    """Tables and their columns from DDL text, a connection, or a dict of tables to columns."""
    if isinstance(schema, str):
        tables = _from_ddl(schema, dialect)
    elif isinstance(schema, Mapping):
        tables = {}
        for t, cols in schema.items():
            if not isinstance(t, str) or isinstance(cols, str) or not isinstance(cols, Sequence):
                raise ContractError(f"Sql: schema entries are table -> list of column names; {t!r} is not")
            tables[t] = [str(c) for c in cols]
    elif hasattr(schema, "cursor") or isinstance(schema, sqlite3.Connection):
        tables = _from_connection(schema, dialect)
    else:
        raise ContractError(
            f"Sql: schema must be DDL text, a dict of tables to columns or a database connection, "
            f"not {type(schema).__name__}"
        )
    if not tables:
        raise ContractError(
            "Sql: the schema has no tables; give at least one CREATE TABLE (or table -> columns)"
        )
    empty = sorted(t for t, cols in tables.items() if not cols)
    if empty:
        raise ContractError(f"Sql: table(s) {empty} have no columns in the schema")
    return tables


@dataclass(frozen=True, eq=False)
class Sql(Contract):
    """One SQL statement over ``schema`` (value: the statement text, without a trailing ``;``).

    ``allow``: statement kinds, from ``select``, ``insert``, ``update``, ``delete``,
    ``create``; ``max_rows``: a SELECT must end in ``LIMIT n`` with ``n <= max_rows``;
    ``connection`` + ``explain``: the database must accept ``EXPLAIN`` of the statement."""

    schema: Any
    dialect: str = "sqlite"
    allow: tuple[str, ...] = ("select",)
    max_rows: int | None = None
    connection: Any = field(default=None, repr=False)
    explain: bool = False
    kind: str = field(default="sql", init=False)
    tables: dict[str, list[str]] = field(init=False, repr=False)
    grammar_text: str = field(init=False, repr=False)  # the decoding grammar, in Lark syntax
    _grammar: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        _dialect(self.dialect)
        allow = (self.allow,) if isinstance(self.allow, str) else tuple(self.allow)
        bad = sorted(set(allow) - set(KINDS))
        if not allow or bad:
            raise ContractError(
                f"Sql: allow must name statement kinds from {list(KINDS)}, not {bad or allow}"
            )
        set_(self, "allow", allow)
        if self.max_rows is not None and (
            isinstance(self.max_rows, bool) or not isinstance(self.max_rows, int) or self.max_rows < 1
        ):
            raise ContractError(f"Sql: max_rows must be a positive integer, not {self.max_rows!r}")
        if self.explain and self.connection is None:
            raise ContractError(
                "Sql: explain=True needs connection= (the database that checks the statement)"
            )
        source = self.schema if self.schema is not None else self.connection
        set_(self, "tables", schema_from(source, self.dialect))
        set_(self, "grammar_text", sql_grammar(self.tables, allow, self.max_rows))
        set_(self, "_grammar", ensure_grammar(LLMatcher.grammar_from_lark(self.grammar_text), "Sql"))

    def __hash__(self) -> int:
        return hash(self.digest())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sql) and other.digest() == self.digest()

    def grammar(self) -> str:
        return self._grammar

    # -- validation ---------------------------------------------------------------------------
    def parse(self, text: str) -> Verdict:
        sql = _unfenced(text).strip().rstrip(";").strip()
        if not sql:
            return Verdict.failed("sql_parse_error", "empty output")
        try:
            statements = [s for s in sqlglot.parse(sql, read=self.dialect) if s is not None]
        except sqlglot.errors.SqlglotError as exc:
            return Verdict.failed(
                "sql_parse_error", f"not valid {self.dialect} SQL: {str(exc).splitlines()[0]}"
            )
        if len(statements) != 1:
            return Verdict.failed("sql_parse_error", f"{len(statements)} statements; write exactly one")
        st = statements[0]
        kind = next((k for t, k in _KIND_OF.items() if isinstance(st, t)), None)
        if kind is None:
            return Verdict.failed("sql_parse_error", f"not a SQL statement (read as {type(st).__name__})")
        if kind not in self.allow:
            return Verdict.failed("sql_kind_not_allowed", f"a {kind.upper()} statement; "
                                  f"this step allows {', '.join(k.upper() for k in self.allow)} only")  # fmt: skip
        problem = self._unresolved(st, kind)
        if problem is not None:
            return Verdict.failed(*problem)
        if self.max_rows is not None and kind == "select":
            limit = st.args.get("limit")
            value = limit.expression if isinstance(limit, exp.Limit) else None
            n = int(value.this) if isinstance(value, exp.Literal) and value.is_int else None
            if n is None or n > self.max_rows:
                return Verdict.failed(
                    "sql_row_limit", f"a SELECT here must end in LIMIT n with n <= {self.max_rows}"
                )
        if self.explain:
            try:
                cur = self.connection.cursor()
                cur.execute(("EXPLAIN QUERY PLAN " if self.dialect == "sqlite" else "EXPLAIN ") + sql)
                cur.fetchall()
            except Exception as exc:  # noqa: BLE001 (any driver's error is the database's verdict)
                return Verdict.failed("sql_explain_failed", f"the database refused it: {exc}")
        return Verdict.passed(sql)

    def _unresolved(self, st: Any, kind: str) -> tuple[str, str] | None:
        """The first table or column the schema does not have, as a verdict reason."""
        lower = {t.lower(): t for t in self.tables}
        aliases: dict[str, str] = {}
        used: list[str] = []
        for table in st.find_all(exp.Table):
            real = lower.get(table.name.lower())
            if real is None:
                if kind == "create" and table.find_ancestor(exp.Create) is not None:
                    continue  # the table being created
                return (
                    "sql_unknown_table",
                    f"table {table.name!r} is not in the schema ({', '.join(self.tables)})",
                )
            used.append(real)
            if table.alias:
                aliases[table.alias.lower()] = real
        if kind == "create":
            return None  # new column definitions, nothing to resolve
        names = {a.alias.lower() for a in st.find_all(exp.Alias)}  # select-list names ORDER BY may use
        for col in st.find_all(exp.Column):
            if isinstance(col.this, exp.Star):
                continue
            name = col.name.lower()
            if col.table:
                real = aliases.get(col.table.lower()) or lower.get(col.table.lower())
                if real is None:
                    return (
                        "sql_unknown_table",
                        f"{col.table!r} (in {col.sql()}) is no table or alias of this statement",
                    )
                pool = [real]
            else:
                pool = used
            if not any(name in (c.lower() for c in self.tables[t]) for t in pool) and name not in names:
                where = ", ".join(pool) or "no table"
                return "sql_unknown_column", f"column {col.name!r} is not in {where}"
        return None

    def equivalent(self, a: Any, b: Any) -> bool:
        """The same statement after sqlglot's normalisation (case, quoting, whitespace)."""
        return self.normalised(str(a)) == self.normalised(str(b))

    def normalised(self, sql: str) -> str:
        """The statement as sqlglot writes it back (code fence and trailing ``;`` dropped)."""
        sql = _unfenced(sql).strip().rstrip(";")
        try:
            return sqlglot.parse_one(sql, read=self.dialect).sql(dialect=self.dialect, normalize=True)
        except sqlglot.errors.SqlglotError:
            return " ".join(sql.split())

    # -- prompting ----------------------------------------------------------------------------
    def instructions(self) -> str:
        limit = f" End a SELECT with LIMIT n, n at most {self.max_rows}." if self.max_rows else ""
        tables = "\n".join(f"  {t}({', '.join(cols)})" for t, cols in self.tables.items())
        # Name what each allowed kind is for: a small model's masked first token otherwise
        # drifts to whichever keyword shares a letter with the prose it wanted to write
        # (measured on BFCL sql with SmolLM2: "In..." became INSERT on every item).
        kinds = "; ".join(_KIND_USE[k] for k in self.allow)
        return (
            f"Write exactly one {self.dialect} SQL statement for the request ({kinds}), "
            f"using only these tables and columns:\n{tables}\n{limit.strip()}\n"
            "Reply with the SQL statement only, in a ```sql code block, no explanation."
        ).replace("\n\n", "\n")

    def openai_request(self) -> dict[str, Any]:
        return {}  # plain text, validated afterwards (remote rungs are told in the prompt)

    def spec(self) -> dict[str, Any]:
        return {
            "schema": self.tables,
            "dialect": self.dialect,
            "allow": list(self.allow),
            "max_rows": self.max_rows,
        }
