"""Step contracts declared in the fleet file (SQL, a grammar): a ``ladder/<step>`` request
without tools or a response format is decoded against them and validated by them.

Scripted rungs stand in for models (what is tested is the gateway's and the fleet's logic);
the SQL contract itself runs against a real SQLite file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from modelladder.fleet import FleetError, load_fleet, parse_fleet
from modelladder.traces import TraceStore
from tests.support.gateway import directive, gateway, scripted

RUNGS = [{"name": n, "backend": "openai", "url": "http://127.0.0.1:9/v1", "params": i + 1}
         for i, n in enumerate(("tiny", "small"))]  # fmt: skip


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    db = tmp_path / "shop.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE orders (id INTEGER, customer TEXT, total REAL, status TEXT);"
        "INSERT INTO orders VALUES (1, 'Ann', 120.0, 'paid'), (2, 'Bob', 40.0, 'open');"
    )
    conn.commit()
    conn.close()
    return db


def _fleet_file(tmp_path: Path, step: str) -> Path:
    rungs = "".join(
        f'[[rung]]\nname = "{r["name"]}"\nbackend = "openai"\nurl = "{r["url"]}"\nparams = {r["params"]}\n\n'
        for r in RUNGS
    )
    path = tmp_path / "fleet.toml"
    path.write_text(rungs + step)
    return path


def test_a_sql_step_answers_validated_sql_and_escalates_an_unknown_column(tmp_path: Path, shop: Path) -> None:
    path = _fleet_file(tmp_path, '[step.orders]\nmax_attempts = 2\n[step.orders.sql]\ndatabase = "shop.sqlite"\n'
                                 "max_rows = 10\nexplain = true\n")  # fmt: skip
    fleet = load_fleet(path)
    assert fleet.contracts["orders"].tables == {"orders": ["id", "customer", "total", "status"]}
    store = TraceStore(tmp_path / "t.sqlite")
    backends = {"tiny": scripted("tiny"), "small": scripted("small")}
    with gateway(fleet, store, backends) as srv:
        url = srv.base_url + "/v1/chat/completions"
        good = "SELECT customer FROM orders WHERE status = 'open' LIMIT 10"
        ask = directive(tiny="SELECT colour FROM orders LIMIT 10", small=good) + " Who has open orders?"
        r = httpx.post(url, json={"model": "ladder/orders", "messages": [{"role": "user", "content": ask}]})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == good
        assert r.headers["x-modelladder-rung"] == "small"
        assert "sql_unknown_column" in r.headers["x-modelladder-escalation-reason"]
        bad = directive(default="DELETE FROM orders") + " Remove everything."
        r = httpx.post(url, json={"model": "ladder/orders", "messages": [{"role": "user", "content": bad}]})
        assert r.status_code == 422 and "sql_kind_not_allowed" in r.text
        assert r.json()["modelladder"]["usage"]["prompt_tokens"] > 0
    store.close()
    rows = sqlite3.connect(shop).execute("SELECT COUNT(*) FROM orders").fetchone()
    assert rows == (2,)  # validation explained, never executed


def test_a_grammar_step(tmp_path: Path) -> None:
    fleet = parse_fleet({"rung": RUNGS, "step": {"yn": {"grammar": {"lark": 'start: "yes" | "no"'}}}})
    store = TraceStore(tmp_path / "t.sqlite")
    with gateway(fleet, store, {"tiny": scripted("tiny"), "small": scripted("small")}) as srv:
        body = {"model": "ladder/yn", "messages": [{"role": "user", "content": directive(default="no")}]}
        r = httpx.post(srv.base_url + "/v1/chat/completions", json=body)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "no"
    store.close()


@pytest.mark.parametrize(
    ("step", "match"),
    [
        ({"sql": {"schema": "CREATE TABLE (", "dialect": "sqlite"}}, r"\[step.q\].sql: Sql: the schema DDL"),
        ({"sql": {"database": "missing.sqlite"}}, "`database` file not found"),
        ({"sql": {}}, "exactly one of `database`, `schema`, `schema_file`"),
        ({"sql": {"schema": "CREATE TABLE t (a INT)", "colour": 1}}, "unknown field"),
        ({"sql": {"schema": "CREATE TABLE t (a INT)"}, "grammar": {"lark": 'start: "a"'}}, "one contract"),
        ({"grammar": {"lark": "start: nowhere"}}, "lark package cannot read"),
        ({"grammar": {}}, "needs `lark`"),
    ],
)
def test_bad_step_contracts_are_fleet_errors(step: dict, match: str) -> None:
    with pytest.raises(FleetError, match=match):
        parse_fleet({"rung": RUNGS, "step": {"q": step}}, "fleet.toml")


def test_the_cli_exits_2_on_a_bad_step_contract(tmp_path: Path) -> None:
    path = _fleet_file(tmp_path, '[step.q.sql]\nschema = "CREATE TABLE ("\n')
    cli = Path(sys.executable).with_name("modelladder")
    out = subprocess.run(
        [str(cli), "demo", "--fleet", str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2 and "[step.q].sql" in out.stderr + out.stdout
