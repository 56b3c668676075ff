"""Contracts a fleet file declares for its named steps, for clients that cannot send one.

An agent talking to the gateway brings its contract in the request (``tools``,
``response_format``). A SQL or grammar step cannot: OpenAI's API has no field for either. So
the fleet file names it, and a ``ladder/<step>`` request without tools or a response format
is decoded against it and answered in plain text::

    [step.orders_sql.sql]
    database = "shop.sqlite"      # read-only; or: schema = "CREATE TABLE ..." / schema_file = "shop.sql"
    dialect = "sqlite"
    allow = ["select"]
    max_rows = 50
    explain = true                # the database must accept EXPLAIN of every query

    [step.yes_no.grammar]
    lark = 'start: "yes" | "no"'

Paths are relative to the fleet file. A wrong declaration is a :class:`FleetError` naming the
step, raised when the fleet is loaded (the CLI exits 2), never at the first request.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from modelladder.contracts import Contract, ContractError, Grammar, Sql
from modelladder.fleet_types import FleetError

__all__ = ["CONTRACT_KEYS", "step_contract"]

CONTRACT_KEYS = ("sql", "grammar")
_SQL_KEYS = {"database", "schema", "schema_file", "dialect", "allow", "max_rows", "explain"}
_GRAMMAR_KEYS = {"lark", "start", "description"}


def _path(value: Any, base: Path | None, where: str, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise FleetError(f"{where}: `{key}` must be a file path")
    p = Path(value).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    if not p.is_file():
        raise FleetError(f"{where}: `{key}` file not found: {p}")
    return p


def _sql(table: dict[str, Any], where: str, base: Path | None) -> Sql:
    unknown = set(table) - _SQL_KEYS
    if unknown:
        raise FleetError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(_SQL_KEYS)}")
    sources = [k for k in ("database", "schema", "schema_file") if k in table]
    if len(sources) != 1:
        raise FleetError(
            f"{where}: give exactly one of `database`, `schema`, `schema_file` (got {sources or 'none'})"
        )
    connection = None
    schema: Any = table.get("schema")
    if "database" in table:
        db = _path(table["database"], base, where, "database")
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
    elif "schema_file" in table:
        schema = _path(table["schema_file"], base, where, "schema_file").read_text()
    allow = table.get("allow", ["select"])
    return Sql(
        schema,
        dialect=table.get("dialect", "sqlite"),
        allow=tuple(allow) if isinstance(allow, list) else allow,
        max_rows=table.get("max_rows"),
        connection=connection,
        explain=bool(table.get("explain", False)),
    )


def _grammar(table: dict[str, Any], where: str) -> Grammar:
    unknown = set(table) - _GRAMMAR_KEYS
    if unknown:
        raise FleetError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(_GRAMMAR_KEYS)}")
    if "lark" not in table:
        raise FleetError(f"{where}: a grammar step needs `lark` (the grammar text)")
    return Grammar(table["lark"], start=table.get("start", "start"), description=table.get("description", ""))


def step_contract(table: dict[str, Any], where: str, base: Path | None) -> Contract | None:
    """The contract a ``[step.NAME]`` table declares (and removes from it), or ``None``."""
    found = [k for k in CONTRACT_KEYS if k in table]
    if not found:
        return None
    if len(found) > 1:
        raise FleetError(f"{where}: a step has one contract; it declares {found}")
    key = found[0]
    spec = table.pop(key)
    if not isinstance(spec, dict):
        raise FleetError(f"{where}: `{key}` must be a table ([{where.split(' ')[-1].strip('[]')}.{key}])")
    try:
        return _sql(spec, f"{where}.{key}", base) if key == "sql" else _grammar(spec, f"{where}.{key}")
    except ContractError as exc:
        raise FleetError(f"{where}.{key}: {exc}") from None
