"""The trace store (modelladder.traces) and its CLI (modelladder traces ...)."""

from __future__ import annotations

import io
import json
import multiprocessing
import sqlite3
import sys
import threading
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from modelladder.contracts.base import Verdict
from modelladder.ladder.outcome import Attempt, Confidence, Resolved, StepResult, Unresolved
from modelladder.traces import (
    RunRecord,
    RunSummary,
    SchemaVersionError,
    TraceStore,
    TraceStoreError,
    UnknownRunError,
    data_dir,
)
from modelladder.traces import migrations as mig

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


class City(BaseModel):
    city: str
    population: int | None = None


def make_resolved(
    run_id: str = "run-res", step: str = "extract", tags: dict[str, str] | None = None
) -> Resolved:
    failed = Attempt(
        index=0,
        rung="tiny",
        placement="local",
        text='{"city": 4}',
        verdict=Verdict.failed("schema_violation", "city: 4 is not a string", {"city": 4}),
        confidence=Confidence(-0.25, -1.5, 3),
        prompt_tokens=50,
        completion_tokens=6,
        cached_prompt_tokens=10,
        latency_s=0.1,
        finish_reason="stop",
        escalation_reason="schema_violation",
    )
    good = Attempt(
        index=1,
        rung="small",
        placement="remote",
        text='{"city": "Paris", "population": 2100000}',
        verdict=Verdict.passed(City(city="Paris", population=2_100_000)),
        confidence=Confidence(-0.05, -0.4, 4),
        prompt_tokens=60,
        completion_tokens=12,
        latency_s=0.4,
        cost_usd=0.0012,
        finish_reason="stop",
        accepted=True,
    )
    return Resolved(
        run_id=run_id,
        step=step,
        contract_digest="c0ffee",
        messages=[{"role": "system", "content": "Extract."}, {"role": "user", "content": "I live in Paris."}],
        attempts=[failed, good],
        latency_s=0.55,
        tags=tags if tags is not None else {"env": "test"},
    )


def make_unresolved(run_id: str = "run-unres", step: str = "extract") -> Unresolved:
    crashed = Attempt(
        index=0, rung="tiny", placement="local", error="timeout", error_detail="no answer in 5s",
        latency_s=5.0, escalation_reason="backend_error:timeout",
    )  # fmt: skip
    wrong = Attempt(
        index=1,
        rung="small",
        placement="local",
        text="Paris, I think",
        verdict=Verdict.failed("parse_error", "not JSON"),
        prompt_tokens=40,
        completion_tokens=5,
        escalation_reason="parse_error",
    )
    return Unresolved(
        run_id=run_id,
        step=step,
        contract_digest=None,
        messages=[{"role": "user", "content": "Where do I live?"}],
        attempts=[crashed, wrong],
        latency_s=5.2,
        reason="ladder_exhausted",
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "traces.sqlite"


@pytest.fixture
def store(db: Path):
    with TraceStore(db) as s:
        yield s


# -- location and opening ------------------------------------------------------------------------


def test_data_dir_and_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELLADDER_HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home"
    with TraceStore() as s:
        assert s.path == tmp_path / "home" / "traces.sqlite"
    assert (tmp_path / "home" / "traces.sqlite").is_file()
    monkeypatch.delenv("MODELLADDER_HOME")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert data_dir() == tmp_path / "user" / ".local" / "share" / "modelladder"


def test_unwritable_location_and_bad_files(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(TraceStoreError, match="cannot create the directory"):
        TraceStore(blocker / "sub" / "traces.sqlite")
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(TraceStoreError, match="cannot open the trace store"):
        TraceStore(garbage)
    with pytest.raises(TraceStoreError, match="is a directory"):
        TraceStore(tmp_path)
    with pytest.raises(TraceStoreError, match="no trace store at"):
        TraceStore(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()


def test_connection_settings(store: TraceStore) -> None:
    conn = store._db
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    with pytest.raises(sqlite3.IntegrityError):  # foreign keys are enforced
        conn.execute("INSERT INTO attempts (run_id, idx, rung, placement) VALUES ('nope', 0, 'r', 'local')")


def test_closed_store_and_memory_store(db: Path) -> None:
    s = TraceStore(db)
    s.close()
    s.close()  # idempotent
    with pytest.raises(TraceStoreError, match="closed"):
        s.list_runs()
    with TraceStore(":memory:") as m:
        m.record(make_resolved())
        assert m.count_runs() == 1
    assert not Path(":memory:").exists()


# -- migrations ----------------------------------------------------------------------------------


def test_migration_list_is_well_formed() -> None:
    versions = [m.version for m in mig.MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1)) and len(versions) >= 2
    assert versions[-1] == mig.LATEST_VERSION
    assert list(mig._statements("CREATE TABLE t (a TEXT DEFAULT ';'); ; SELECT 1;")) == [
        "CREATE TABLE t (a TEXT DEFAULT ';');",
        "SELECT 1;",
    ]


def test_migrate_from_empty(db: Path) -> None:
    with TraceStore(db) as s:
        assert s.schema_version == mig.LATEST_VERSION
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT version, name FROM _migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == [m.version for m in mig.MIGRATIONS]
    conn.close()
    with TraceStore(db) as s:  # reopening applies nothing
        assert s.schema_version == mig.LATEST_VERSION


def test_upgrade_from_v1_keeps_data(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    assert mig.migrate(conn, target=1) == [1]
    assert mig.current_version(conn) == 1
    conn.execute(
        "INSERT INTO runs (run_id, created_at, step, messages, outcome, rung, placement, text, value) "
        "VALUES ('old', ?, 'extract', '[]', 'resolved', 'tiny', 'local', 'hi', '\"hi\"')",
        (T0.isoformat(),),
    )
    conn.execute(
        "INSERT INTO attempts (run_id, idx, rung, placement, text, accepted) VALUES ('old', 0, 'tiny', 'local', 'hi', 1)"
    )
    columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    assert "feedback_success" not in columns
    conn.close()

    with TraceStore(db) as s:
        assert s.schema_version == mig.LATEST_VERSION
        run = s.get_run("old")
        assert run.feedback_success is None and run.value == "hi" and run.attempts[0].accepted
        s.record_feedback("old", True, "fine")
        assert s.get_run("old").feedback_success is True


def test_newer_schema_is_refused(db: Path) -> None:
    TraceStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO _migrations VALUES (?, 'from the future', '2099-01-01')", (mig.LATEST_VERSION + 7,)
    )
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError, match=rf"schema version {mig.LATEST_VERSION + 7}, newer than"):
        TraceStore(db)


def test_failed_migration_rolls_back(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    TraceStore(db).close()
    broken = mig.Migration(mig.LATEST_VERSION + 1, "broken", "CREATE TABLE half (a); SELECT no_such_fn();")
    monkeypatch.setattr(mig, "MIGRATIONS", (*mig.MIGRATIONS, broken))
    monkeypatch.setattr(mig, "LATEST_VERSION", broken.version)
    with pytest.raises(TraceStoreError, match="no_such_fn"):
        TraceStore(db)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT MAX(version) FROM _migrations").fetchone()[0] == broken.version - 1
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'half'").fetchone() is None
    conn.close()


# -- record / get --------------------------------------------------------------------------------


def test_round_trip_resolved(store: TraceStore) -> None:
    result = make_resolved()
    store.record(result, created_at=T0)
    run = store.get_run(result.run_id)
    assert isinstance(run, RunRecord) and isinstance(run, RunSummary)
    assert run.run_id == "run-res" and run.step == "extract" and run.contract_digest == "c0ffee"
    assert run.created_at == T0
    assert run.outcome == "resolved" and run.resolved and run.reason is None
    assert (run.rung, run.placement) == ("small", "remote")
    assert run.messages == result.messages
    assert run.text == result.text
    assert run.value == {"city": "Paris", "population": 2100000}  # Pydantic -> model_dump(mode="json")
    assert run.latency_s == pytest.approx(0.55) and run.cost_usd == pytest.approx(0.0012)
    assert (run.prompt_tokens, run.completion_tokens) == (110, 18)
    assert run.tags == {"env": "test"} and run.n_attempts == 2
    assert run.feedback_success is None and run.feedback_note is None and run.feedback_at is None

    first, second = run.attempts
    assert first.index == 0 and first.rung == "tiny" and first.placement == "local"
    assert first.verdict == Verdict.failed("schema_violation", "city: 4 is not a string", {"city": 4})
    assert first.confidence == Confidence(-0.25, -1.5, 3)
    assert (first.prompt_tokens, first.completion_tokens, first.cached_prompt_tokens) == (50, 6, 10)
    assert first.escalation_reason == "schema_violation" and not first.accepted
    assert first.finish_reason == "stop" and first.error is None
    assert second.accepted and second.verdict_ok is True and second.verdict_reason is None
    assert second.value == {"city": "Paris", "population": 2100000}
    assert run.accepted == second


def test_round_trip_unresolved(store: TraceStore) -> None:
    result = make_unresolved()
    store.record(result)
    run = store.get_run(result.run_id)
    assert run.outcome == "unresolved" and not run.resolved and run.reason == "ladder_exhausted"
    assert run.rung is None and run.placement is None and run.text is None and run.value is None
    assert run.contract_digest is None and run.tags == {} and run.accepted is None
    crashed, wrong = run.attempts
    assert crashed.verdict is None and crashed.verdict_ok is None and crashed.confidence is None
    assert crashed.error == "timeout" and crashed.error_detail == "no answer in 5s" and crashed.text == ""
    assert crashed.escalation_reason == "backend_error:timeout"
    assert wrong.verdict == Verdict.failed("parse_error", "not JSON")
    assert abs(run.created_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_odd_values_are_serialised(store: TraceStore) -> None:
    result = make_resolved("odd")
    result.attempts[-1].verdict = Verdict.passed({"when": T0, "cities": [City(city="Rome")], "n": None})
    store.record(result)
    assert store.get_run("odd").value == {
        "when": str(T0),
        "cities": [{"city": "Rome", "population": None}],
        "n": None,
    }


def test_bad_records_are_refused(store: TraceStore) -> None:
    store.record(make_resolved())
    with pytest.raises(TraceStoreError, match="already recorded"):
        store.record(make_resolved())
    with pytest.raises(TraceStoreError, match="only Resolved or Unresolved"):
        store.record(StepResult(run_id="bare", step="s", contract_digest=None, messages=[]))
    with pytest.raises(TraceStoreError, match="no attempts"):
        store.record(Resolved(run_id="empty", step="s", contract_digest=None, messages=[]))
    assert store.count_runs() == 1


def test_get_unknown_run(store: TraceStore) -> None:
    with pytest.raises(UnknownRunError, match="no run with id 'nope'") as info:
        store.get_run("nope")
    assert isinstance(info.value, KeyError) and isinstance(info.value, TraceStoreError)
    assert str(info.value).startswith("no run with id")


# -- atomicity -----------------------------------------------------------------------------------


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("boom")


def test_record_is_atomic_when_serialisation_fails(store: TraceStore, db: Path) -> None:
    result = make_resolved("half")
    bad = Attempt(index=1, rung="mid", placement="local", verdict=Verdict.failed("x", value=Unprintable()))
    result.attempts[1].index = 2
    result.attempts.insert(1, bad)  # the run row and attempt 0 are written before this one fails
    with pytest.raises(TraceStoreError, match="cannot serialise the attempt 1 value of run 'half'"):
        store.record(result)
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    assert raw.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 0
    raw.close()
    with pytest.raises(UnknownRunError):
        store.get_run("half")
    store.record(make_resolved("after"))  # the store is still usable
    assert [r.run_id for r in store.list_runs()] == ["after"]


def test_record_is_atomic_when_an_insert_fails(store: TraceStore) -> None:
    result = make_resolved("dup-idx")
    result.attempts[1].index = 0  # duplicate (run_id, idx)
    with pytest.raises(TraceStoreError, match="cannot record run 'dup-idx'"):
        store.record(result)
    assert store.count_runs() == 0


# -- feedback and listing ------------------------------------------------------------------------


def test_feedback(store: TraceStore) -> None:
    store.record(make_resolved())
    store.record_feedback("run-res", False, "wrong city")
    run = store.get_run("run-res")
    assert run.feedback_success is False and run.feedback_note == "wrong city"
    assert run.feedback_at is not None and abs(run.feedback_at - datetime.now(UTC)) < timedelta(minutes=1)
    store.record_feedback("run-res", True)  # latest feedback wins
    run = store.get_run("run-res")
    assert run.feedback_success is True and run.feedback_note is None
    with pytest.raises(UnknownRunError, match="no run with id 'missing'"):
        store.record_feedback("missing", True)
    with pytest.raises(KeyError):
        store.record_feedback("missing", False)


def test_list_and_count_filters(store: TraceStore) -> None:
    for i in range(5):
        store.record(
            make_resolved(f"a{i}", step="extract", tags={"user": "ann"}), created_at=T0 + timedelta(minutes=i)
        )
    for i in range(3):
        store.record(make_unresolved(f"b{i}", step="route"), created_at=T0 + timedelta(minutes=10 + i))
    store.record(
        make_resolved("c0", step="route", tags={"user": "bob", "env": "prod"}),
        created_at=T0 + timedelta(hours=1),
    )

    assert [r.run_id for r in store.list_runs(limit=3)] == ["c0", "b2", "b1"]  # newest first
    assert len(store.list_runs()) == 9 and len(store.list_runs(limit=None)) == 9
    assert store.list_runs(limit=0) == []
    assert [r.run_id for r in store.list_runs(step="route")] == ["c0", "b2", "b1", "b0"]
    assert [r.run_id for r in store.list_runs(outcome="unresolved")] == ["b2", "b1", "b0"]
    assert [r.run_id for r in store.list_runs(step="route", outcome="resolved")] == ["c0"]
    assert [r.run_id for r in store.list_runs(tag=("user", "bob"))] == ["c0"]
    assert [r.run_id for r in store.list_runs(tag=("user", "ann"), limit=2)] == ["a4", "a3"]
    assert store.list_runs(tag=("user", "carl")) == []
    summary = store.list_runs(outcome="unresolved", limit=1)[0]
    assert isinstance(summary, RunSummary) and summary.n_attempts == 2 and summary.rung is None
    assert summary.reason == "ladder_exhausted" and summary.created_at == T0 + timedelta(minutes=12)

    assert store.count_runs() == 9
    assert store.count_runs(step="extract") == 5
    assert store.count_runs(outcome="unresolved") == 3
    assert store.count_runs(tag=("env", "prod"), step="route") == 1
    with pytest.raises(ValueError, match="outcome must be one of"):
        store.list_runs(outcome="maybe")


# -- concurrency ---------------------------------------------------------------------------------


def _process_writer(path: str, worker: int, n: int) -> None:
    with TraceStore(path) as s:
        for i in range(n):
            s.record(make_resolved(f"p{worker}-{i}", tags={"worker": str(worker)}))


def test_concurrent_writers_in_threads(db: Path) -> None:
    TraceStore(db).close()
    errors: list[BaseException] = []

    def own_store(worker: int) -> None:
        try:
            with TraceStore(db) as s:
                for i in range(25):
                    s.record(make_resolved(f"t{worker}-{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    shared = TraceStore(db)

    def shared_store(worker: int) -> None:
        try:
            for i in range(10):
                shared.record(make_unresolved(f"s{worker}-{i}"))
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=own_store, args=(w,)) for w in range(8)]
    threads += [threading.Thread(target=shared_store, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    shared.close()
    assert not errors
    with TraceStore(db) as s:
        assert s.count_runs(outcome="resolved") == 8 * 25
        assert s.count_runs(outcome="unresolved") == 4 * 10
        assert s._db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == (200 + 40) * 2


def test_concurrent_writers_in_processes(db: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(str(db), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with TraceStore(db) as s:
        assert s.count_runs() == 100
        assert all(s.count_runs(tag=("worker", str(w))) == 25 for w in range(4))
        assert s._db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 200


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork()")
def test_store_inherited_across_fork_reconnects(store: TraceStore) -> None:
    store.record(make_resolved("parent-1"))

    def child() -> None:
        store.record(make_resolved("child"))  # must not reuse the parent's connection
        store.close()

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 0
    store.record(make_resolved("parent-2"))  # the parent's connection is untouched
    assert {r.run_id for r in store.list_runs()} == {"parent-1", "child", "parent-2"}


# -- export --------------------------------------------------------------------------------------


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_export_chat_jsonl(store: TraceStore) -> None:
    store.record(make_resolved("good", tags={}), created_at=T0)
    store.record(make_unresolved("bad"), created_at=T0 + timedelta(seconds=1))
    store.record(make_resolved("disliked"), created_at=T0 + timedelta(seconds=2))
    store.record(make_resolved("other-step", step="route"), created_at=T0 + timedelta(seconds=3))
    store.record_feedback("disliked", False, "wrong")
    store.record_feedback("good", True)

    buf = io.StringIO()
    assert store.export_chat_jsonl(buf) == 2
    lines = _lines(buf.getvalue())
    assert len(lines) == 2 and all(set(line) == {"messages"} for line in lines)
    first = lines[0]["messages"]
    assert first[:-1] == make_resolved().messages
    assert first[-1] == {"role": "assistant", "content": '{"city": "Paris", "population": 2100000}'}

    buf = io.StringIO()
    assert store.export_chat_jsonl(buf, step="extract", with_metadata=True) == 1
    (line,) = _lines(buf.getvalue())
    assert line["metadata"]["run_id"] == "good" and line["metadata"]["rung"] == "small"
    assert line["metadata"]["step"] == "extract" and line["metadata"]["outcome"] == "resolved"

    buf = io.StringIO()
    n = store.export_chat_jsonl(
        buf, include_unresolved=True, exclude_failed_feedback=False, with_metadata=True
    )
    lines = _lines(buf.getvalue())
    assert n == 4 and [x["metadata"]["run_id"] for x in lines] == ["good", "bad", "disliked", "other-step"]
    assert lines[1]["messages"][-1] == {"role": "assistant", "content": "Paris, I think"}  # last attempt text
    assert lines[1]["metadata"]["outcome"] == "unresolved"


# -- CLI -----------------------------------------------------------------------------------------


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
def filled(db: Path) -> Path:
    with TraceStore(db) as s:
        s.record(make_resolved("res-1234"), created_at=T0)
        s.record(make_unresolved("unres-5678"), created_at=T0 + timedelta(seconds=1))
        s.record(make_resolved("res-9999", step="route"), created_at=T0 + timedelta(seconds=2))
        s.record_feedback("res-9999", False, "no")
    return db


def test_cli_list(cli, filled: Path) -> None:
    result = cli("list", "--db", str(filled))
    assert result.exit_code == 0, result.output
    assert "res-1234" in result.stdout and "unres-5678" in result.stdout and "res-9999" in result.stdout
    assert "3 of 3 runs" in result.stdout
    result = cli("list", "--db", str(filled), "--outcome", "unresolved", "--limit", "5")
    assert result.exit_code == 0 and "unres-5678" in result.stdout and "res-1234" not in result.stdout
    result = cli("list", "--db", str(filled), "--step", "route")
    assert "res-9999" in result.stdout and "res-1234" not in result.stdout and "1 of 1 runs" in result.stdout
    result = cli("list", "--db", str(filled), "--step", "nothing")
    assert result.exit_code == 0 and "no runs recorded matching" in result.stdout
    assert cli("list", "--db", str(filled), "--outcome", "maybe").exit_code == 2
    result = cli("list", "--db", str(filled), "--tag", "no-equals-sign")
    assert result.exit_code == 2 and "error: --tag must look like KEY=VALUE" in result.stderr


def test_cli_show(cli, filled: Path) -> None:
    result = cli("show", "unres-5678", "--db", str(filled))
    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in ("unresolved (ladder_exhausted)", "timeout: no answer in 5s", "backend_error:timeout",
                     "failed: parse_error - not JSON", "Where do I live?", "Paris, I think"):  # fmt: skip
        assert expected in out, expected
    result = cli("show", "res-12", "--db", str(filled))  # a unique prefix is enough
    assert result.exit_code == 0
    assert (
        "accepted" in result.stdout and "mean logprob -0.250, min -1.500 over 3 value tokens" in result.stdout
    )
    assert "schema_violation" in result.stdout and "small (remote)" in result.stdout


def test_cli_show_does_not_interpret_markup(cli, db: Path) -> None:
    result = make_resolved("markup")
    result.attempts[-1].text = "[bold]not bold[/bold] [/]"
    with TraceStore(db) as s:
        s.record(result)
    out = cli("show", "markup", "--db", str(db))
    assert out.exit_code == 0 and "[bold]not bold[/bold] [/]" in out.stdout


def test_cli_export(cli, filled: Path, tmp_path: Path) -> None:
    result = cli("export", "--format", "jsonl", "--db", str(filled))
    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert (
        len(lines) == 1 and lines[0]["messages"][-1]["role"] == "assistant"
    )  # unresolved + disliked left out
    assert "exported 1 run to stdout" in result.stderr

    out = tmp_path / "train.jsonl"
    result = cli("export", "--db", str(filled), "--out", str(out), "--include-failed-feedback", "--metadata")
    assert result.exit_code == 0, result.output
    lines = _lines(out.read_text())
    assert [x["metadata"]["run_id"] for x in lines] == ["res-1234", "res-9999"]
    assert not list(tmp_path.glob(".train.jsonl.*"))  # no temp file left behind
    result = cli("export", "--db", str(filled), "--step", "route", "--include-failed-feedback")
    assert [json.loads(x)["messages"][-1]["content"] for x in result.stdout.splitlines()] == [
        '{"city": "Paris", "population": 2100000}'
    ]


def test_cli_errors(cli, filled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli("export", "--format", "csv", "--db", str(filled))
    assert (
        result.exit_code == 2
        and result.stderr.strip() == "error: unsupported export format 'csv' (supported: jsonl)"
    )
    result = cli("show", "nope", "--db", str(filled))
    assert result.exit_code == 2 and result.stderr.startswith("error: no run with id 'nope'")
    assert len(result.stderr.strip().splitlines()) == 1
    result = cli("show", "res-", "--db", str(filled))
    assert result.exit_code == 2 and "ambiguous" in result.stderr
    missing = tmp_path / "missing.sqlite"
    for args in (["list"], ["show", "x"], ["export"]):
        result = cli(*args, "--db", str(missing))
        assert result.exit_code == 2 and result.stderr.strip() == f"error: no trace store at {missing}"
    assert not missing.exists()
    monkeypatch.setenv("MODELLADDER_HOME", str(tmp_path / "empty-home"))
    result = cli("list")
    assert result.exit_code == 2 and "nothing recorded yet" in result.stderr
    result = cli("export", "--db", str(filled), "--out", str(tmp_path / "no-dir" / "x.jsonl"))
    assert result.exit_code == 2 and "does not exist" in result.stderr
