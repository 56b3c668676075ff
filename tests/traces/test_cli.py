"""``modelladder traces list/show/export`` on both stores (``--db`` a file or a URL), and the
bad inputs: a missing store, an unreachable database, a newer schema: exit 2, one line."""

from __future__ import annotations

import json
import sys
import types
from datetime import timedelta
from pathlib import Path

import pytest

from modelladder.traces import TraceStore
from modelladder.traces import migrations as mig
from tests.support.models import free_port
from tests.support.traces import T0, make_resolved, make_unresolved, raw


@pytest.fixture(scope="module")
def cli():
    from click.testing import CliRunner

    try:
        from modelladder.cli import main
    except ImportError as exc:  # the demo command may not exist yet: the trace commands don't need it
        if "demo_cmd" not in str(exc):
            raise
        sys.modules.pop("modelladder.cli.traces_cmd", None)  # registered on the failed import's group
        sys.modules["modelladder.cli.demo_cmd"] = types.ModuleType("modelladder.cli.demo_cmd")
        from modelladder.cli import main

    runner = CliRunner()
    return lambda *args: runner.invoke(main, ["traces", *args], catch_exceptions=False)


@pytest.fixture
def filled(trace_location: Path | str) -> str:
    with TraceStore(trace_location) as s:
        s.record(make_resolved("res-1234"), created_at=T0)
        s.record(make_unresolved("unres-5678"), created_at=T0 + timedelta(seconds=1))
        s.record(make_resolved("res-9999", step="route"), created_at=T0 + timedelta(seconds=2))
        s.record_feedback("res-9999", False, "no")
    return str(trace_location)


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_cli_list(cli, filled: str) -> None:
    result = cli("list", "--db", filled)
    assert result.exit_code == 0, result.output
    assert "res-1234" in result.stdout and "unres-5678" in result.stdout and "res-9999" in result.stdout
    assert "3 of 3 runs" in result.stdout
    result = cli("list", "--db", filled, "--outcome", "unresolved", "--limit", "5")
    assert result.exit_code == 0 and "unres-5678" in result.stdout and "res-1234" not in result.stdout
    result = cli("list", "--db", filled, "--step", "route")
    assert "res-9999" in result.stdout and "res-1234" not in result.stdout and "1 of 1 runs" in result.stdout
    result = cli("list", "--db", filled, "--step", "nothing")
    assert result.exit_code == 0 and "no runs recorded matching" in result.stdout
    assert cli("list", "--db", filled, "--outcome", "maybe").exit_code == 2
    result = cli("list", "--db", filled, "--tag", "no-equals-sign")
    assert result.exit_code == 2 and "error: --tag must look like KEY=VALUE" in result.stderr


def test_cli_list_from_the_environment(cli, filled: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELLADDER_TRACES", filled)
    result = cli("list")
    assert result.exit_code == 0 and "3 of 3 runs" in result.stdout


def test_cli_show(cli, filled: str) -> None:
    result = cli("show", "unres-5678", "--db", filled)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in ("unresolved (ladder_exhausted)", "timeout: no answer in 5s", "backend_error:timeout",
                     "failed: parse_error - not JSON", "Where do I live?", "Paris, I think"):  # fmt: skip
        assert expected in out, expected
    result = cli("show", "res-12", "--db", filled)  # a unique prefix is enough
    assert result.exit_code == 0
    assert (
        "accepted" in result.stdout and "mean logprob -0.250, min -1.500 over 3 value tokens" in result.stdout
    )
    assert "schema_violation" in result.stdout and "small (remote)" in result.stdout


def test_cli_show_does_not_interpret_markup(cli, trace_location: Path | str) -> None:
    result = make_resolved("markup")
    result.attempts[-1].text = "[bold]not bold[/bold] [/]"
    with TraceStore(trace_location) as s:
        s.record(result)
    out = cli("show", "markup", "--db", str(trace_location))
    assert out.exit_code == 0 and "[bold]not bold[/bold] [/]" in out.stdout


def test_cli_export(cli, filled: str, tmp_path: Path) -> None:
    result = cli("export", "--format", "jsonl", "--db", filled)
    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert (
        len(lines) == 1 and lines[0]["messages"][-1]["role"] == "assistant"
    )  # unresolved + disliked left out
    assert "exported 1 run to stdout" in result.stderr

    out = tmp_path / "train.jsonl"
    result = cli("export", "--db", filled, "--out", str(out), "--include-failed-feedback", "--metadata")
    assert result.exit_code == 0, result.output
    lines = _lines(out.read_text())
    assert [x["metadata"]["run_id"] for x in lines] == ["res-1234", "res-9999"]
    assert not list(tmp_path.glob(".train.jsonl.*"))  # no temp file left behind
    result = cli("export", "--db", filled, "--step", "route", "--include-failed-feedback")
    assert [json.loads(x)["messages"][-1]["content"] for x in result.stdout.splitlines()] == [
        '{"city": "Paris", "population": 2100000}'
    ]


def test_cli_errors(cli, filled: str, tmp_path: Path) -> None:
    result = cli("export", "--format", "csv", "--db", filled)
    assert (
        result.exit_code == 2
        and result.stderr.strip() == "error: unsupported export format 'csv' (supported: jsonl)"
    )
    result = cli("show", "nope", "--db", filled)
    assert result.exit_code == 2 and result.stderr.startswith("error: no run with id 'nope'")
    assert len(result.stderr.strip().splitlines()) == 1
    result = cli("show", "res-", "--db", filled)
    assert result.exit_code == 2 and "ambiguous" in result.stderr
    result = cli("export", "--db", filled, "--out", str(tmp_path / "no-dir" / "x.jsonl"))
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_cli_newer_schema(cli, filled: str) -> None:
    with raw(filled if "://" in filled else Path(filled)) as db:
        db.execute(
            "INSERT INTO _migrations VALUES (?, 'from the future', '2099-01-01')", (mig.LATEST_VERSION + 1,)
        )
    for args in (["list"], ["show", "res-1234"], ["export"]):
        result = cli(*args, "--db", filled)
        assert result.exit_code == 2 and result.stdout == ""
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: the trace store at ") and "newer than this modelladder" in line


def test_cli_missing_sqlite_store(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "missing.sqlite"
    for args in (["list"], ["show", "x"], ["export"]):
        result = cli(*args, "--db", str(missing))
        assert result.exit_code == 2 and result.stderr.strip() == f"error: no trace store at {missing}"
    assert not missing.exists()
    monkeypatch.setenv("MODELLADDER_HOME", str(tmp_path / "empty-home"))
    result = cli("list")
    assert result.exit_code == 2 and "nothing recorded yet" in result.stderr


def test_cli_bad_postgres_urls(cli, postgres_url: str) -> None:
    closed = f"postgresql://postgres:pw@127.0.0.1:{free_port()}/x"
    for args in (["list"], ["show", "x"], ["export"]):
        result = cli(*args, "--db", closed)
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: cannot connect to the trace store at postgresql://postgres:***@")
    result = cli("list", "--db", postgres_url)  # an empty database: not a store, and not made one
    assert result.exit_code == 2 and "has no modelladder tables" in result.stderr
    with raw(postgres_url) as db:
        assert db.schema_version() == 0
