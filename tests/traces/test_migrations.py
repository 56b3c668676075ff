"""Versioned migrations on both stores: from empty, from an old version with data in it, a
failing migration leaving nothing behind, a newer schema refused, concurrent openers."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from modelladder.traces import SchemaVersionError, TraceStore, TraceStoreError
from modelladder.traces import migrations as mig
from tests.support.traces import T0, raw, table_exists


def test_migration_list_is_well_formed() -> None:
    versions = [m.version for m in mig.MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1)) and len(versions) >= 2
    assert versions[-1] == mig.LATEST_VERSION
    assert all(m.sql.strip() and m.postgres.strip() for m in mig.MIGRATIONS), "every migration, both dialects"
    assert list(mig._statements("CREATE TABLE t (a TEXT DEFAULT ';'); ; SELECT 1;")) == [
        "CREATE TABLE t (a TEXT DEFAULT ';');",
        "SELECT 1;",
    ]


def test_migrate_from_empty(trace_location: Path | str) -> None:
    with TraceStore(trace_location) as s:
        assert s.schema_version == mig.LATEST_VERSION
    with raw(trace_location) as db:
        rows = db.execute("SELECT version, name FROM _migrations ORDER BY version").fetchall()
        assert [(r[0], r[1]) for r in rows] == [(m.version, m.name) for m in mig.MIGRATIONS]
    with TraceStore(trace_location) as s:  # reopening applies nothing
        assert s.schema_version == mig.LATEST_VERSION
    with raw(trace_location) as db:
        assert db.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(mig.MIGRATIONS)


def test_upgrade_from_v1_keeps_data(trace_location: Path | str) -> None:
    with raw(trace_location) as db:
        assert db.migrate(target=1) == [1]
        assert db.schema_version() == 1
        db.execute(
            "INSERT INTO runs (run_id, created_at, step, messages, outcome, rung, placement, text, value) "
            "VALUES ('old', ?, 'extract', '[]', 'resolved', 'tiny', 'local', 'hi', '\"hi\"')",
            (T0.isoformat(),),
        )
        db.execute(
            "INSERT INTO attempts (run_id, idx, rung, placement, text, accepted) "
            "VALUES ('old', 0, 'tiny', 'local', 'hi', 1)"
        )
        assert "feedback_success" not in db.execute("SELECT * FROM runs").fetchone().keys()  # noqa: SIM118 (a row)

    with TraceStore(trace_location) as s:
        assert s.schema_version == mig.LATEST_VERSION
        run = s.get_run("old")
        assert run.feedback_success is None and run.value == "hi" and run.attempts[0].accepted
        assert run.step_key == "extract"  # migration 4 filled it in
        s.record_feedback("old", True, "fine")
        assert s.get_run("old").feedback_success is True


def test_newer_schema_is_refused(trace_location: Path | str) -> None:
    TraceStore(trace_location).close()
    with raw(trace_location) as db:
        db.execute(
            "INSERT INTO _migrations VALUES (?, 'from the future', '2099-01-01')", (mig.LATEST_VERSION + 7,)
        )
    with pytest.raises(SchemaVersionError, match=rf"schema version {mig.LATEST_VERSION + 7}, newer than"):
        TraceStore(trace_location)
    with raw(trace_location) as db:  # refused before anything was written
        assert db.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(mig.MIGRATIONS) + 1


def test_failed_migration_rolls_back(trace_location: Path | str, monkeypatch: pytest.MonkeyPatch) -> None:
    TraceStore(trace_location).close()
    broken = mig.Migration(
        mig.LATEST_VERSION + 1,
        "broken",
        "CREATE TABLE half (a); SELECT no_such_fn();",
        postgres="CREATE TABLE half (a INTEGER); SELECT no_such_fn();",
    )
    monkeypatch.setattr(mig, "MIGRATIONS", (*mig.MIGRATIONS, broken))
    monkeypatch.setattr(mig, "LATEST_VERSION", broken.version)
    with pytest.raises(TraceStoreError, match="no_such_fn"):
        TraceStore(trace_location)
    with raw(trace_location) as db:
        assert db.execute("SELECT MAX(version) FROM _migrations").fetchone()[0] == broken.version - 1
        assert not table_exists(db, "half")


def _open_and_count(location: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait(30)
    with TraceStore(location) as s:
        assert s.schema_version == mig.LATEST_VERSION


def test_concurrent_first_opens_migrate_once(trace_location: Path | str) -> None:
    """Replicas starting together against a fresh store: each migration is applied exactly once."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_open_and_count, args=(str(trace_location), barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=90)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with raw(trace_location) as db:
        versions = [r[0] for r in db.execute("SELECT version FROM _migrations ORDER BY version").fetchall()]
    assert versions == [m.version for m in mig.MIGRATIONS]
