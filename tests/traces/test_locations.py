"""Where a trace store is and what opening one checks: the SQLite default and its files, a
PostgreSQL URL from ``--db`` or ``$MODELLADDER_TRACES``, and the bad inputs of each (one clear
error, nothing created)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from modelladder.traces import TraceStore, TraceStoreError, data_dir
from modelladder.traces.paths import default_traces_location, redact_url
from tests.support.models import free_port
from tests.support.postgres import PostgresServer
from tests.support.traces import make_resolved, raw

# -- SQLite ---------------------------------------------------------------------------------------


def test_data_dir_and_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELLADDER_HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home"
    with TraceStore() as s:
        assert s.path == tmp_path / "home" / "traces.sqlite"
    assert (tmp_path / "home" / "traces.sqlite").is_file()
    monkeypatch.setenv("MODELLADDER_TRACES", str(tmp_path / "elsewhere.sqlite"))
    with TraceStore() as s:
        assert s.path == tmp_path / "elsewhere.sqlite"
    monkeypatch.delenv("MODELLADDER_TRACES")
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


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    with TraceStore(tmp_path / "t.sqlite") as store:
        conn = store._db
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        with pytest.raises(sqlite3.IntegrityError):  # foreign keys are enforced
            conn.execute(
                "INSERT INTO attempts (run_id, idx, rung, placement) VALUES ('nope', 0, 'r', 'local')"
            )


def test_memory_store() -> None:
    with TraceStore(":memory:") as m:
        m.record(make_resolved())
        assert m.count_runs() == 1
    assert not Path(":memory:").exists()


# -- PostgreSQL -----------------------------------------------------------------------------------


def test_url_selects_postgres(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELLADDER_TRACES", postgres_url)
    assert default_traces_location() == postgres_url
    with TraceStore() as s:
        assert s.path == postgres_url and repr(s) == f"TraceStore({postgres_url!r})"
        s.record(make_resolved())
    with TraceStore(postgres_url.replace("postgresql://", "postgres://")) as s:  # the short scheme too
        assert s.count_runs() == 1


def test_postgres_connection_settings(postgres_url: str) -> None:
    import psycopg

    with TraceStore(postgres_url, timeout=3) as store:
        db = store._db
        assert db.execute("SHOW lock_timeout").fetchone()[0] == "3s"
        assert db.execute("SHOW TimeZone").fetchone()[0] == "UTC"
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            db.execute("INSERT INTO attempts (run_id, idx, rung, placement) VALUES ('nope', 0, 'r', 'local')")
        types = dict(db.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'runs'"
        ).fetchall())  # fmt: skip
        assert types["latency_s"] == "double precision" and types["prompt_tokens"] == "bigint"


def test_unreachable_postgres_is_one_clear_error(postgres_server: PostgresServer) -> None:
    closed = f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(TraceStoreError, match=r"^cannot connect to the trace store at postgresql://") as info:
        TraceStore(closed, timeout=2)
    assert "s3cret" not in str(info.value) and "postgres:***@127.0.0.1" in str(info.value)
    with pytest.raises(TraceStoreError, match='cannot connect .* database "no_such_db" does not exist'):
        TraceStore(postgres_server.url("no_such_db"))
    with pytest.raises(TraceStoreError, match="cannot connect"):
        TraceStore("postgresql://postgres@127.0.0.1:notaport/x")


def test_missing_postgres_store_is_not_created(postgres_url: str) -> None:
    with pytest.raises(TraceStoreError, match="no trace store at .* has no modelladder tables"):
        TraceStore(postgres_url, create=False)
    with raw(postgres_url) as db:
        assert db.schema_version() == 0
        assert (
            db.execute("SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema()").fetchone()[0]
            == 0
        )


def test_reconnects_after_the_connection_is_lost(postgres_url: str) -> None:
    with TraceStore(postgres_url) as store:
        store.record(make_resolved("before"))
        pid = store._db.execute("SELECT pg_backend_pid()").fetchone()[0]
        with raw(postgres_url) as admin:
            assert admin.execute("SELECT pg_terminate_backend(?)", (pid,)).fetchone()[0] is True
        with pytest.raises(TraceStoreError):  # the request in flight fails, clearly
            store.list_runs()
        store.record(make_resolved("after"))  # the next one gets a new connection
        assert {r.run_id for r in store.list_runs()} == {"before", "after"}
        # lost again while the server cannot be reached: each call fails clearly, none for good
        pid = store._db.execute("SELECT pg_backend_pid()").fetchone()[0]
        with raw(postgres_url) as admin:
            admin.execute("SELECT pg_terminate_backend(?)", (pid,))
        with pytest.raises(TraceStoreError):
            store.count_runs()
        store._location = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"  # as if it were down
        for _ in range(2):
            with pytest.raises(TraceStoreError, match="cannot connect"):
                store.count_runs()
        store._location = postgres_url  # back up
        assert store.count_runs() == 2


def test_nul_in_text_is_refused_by_postgres_only(trace_location: Path | str) -> None:
    """PostgreSQL's text cannot hold NUL; JSON columns escape it, the answer text cannot."""
    result = make_resolved("nul")
    result.attempts[-1].text = "a\x00b"
    with TraceStore(trace_location) as s:
        if isinstance(trace_location, Path):
            s.record(result)
            assert s.get_run("nul").text == "a\x00b"
        else:
            with pytest.raises(TraceStoreError, match="cannot record run 'nul'.*NUL"):
                s.record(result)
            assert s.count_runs() == 0


def test_redact_url() -> None:
    assert redact_url("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"
    assert redact_url("postgresql://u@h/db?password=pw&sslmode=require") == (
        "postgresql://u@h/db?password=***&sslmode=require"
    )
    assert redact_url("postgresql://h/db") == "postgresql://h/db"
