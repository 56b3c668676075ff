"""The SQLite engine: one file (or ``:memory:``), the zero-configuration default.

Each engine owns one connection in WAL mode with ``busy_timeout`` and foreign keys on, so any
number of stores, in any number of threads and processes, can write the same file. Writes
take the write lock up front (``BEGIN IMMEDIATE``) so a writer waits on ``busy_timeout``
instead of failing with ``SQLITE_BUSY`` half-way through.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelladder.traces.engine import Engine
from modelladder.traces.errors import TraceStoreError
from modelladder.traces.migrations import current_version, migrate

__all__ = ["MEMORY", "SqliteEngine"]

MEMORY = ":memory:"


class SqliteEngine(Engine):
    errors = (sqlite3.Error,)
    tag_clause = "EXISTS (SELECT 1 FROM json_each(r.tags) AS t WHERE t.key = ? AND CAST(t.value AS TEXT) = ?)"
    prefix_clause = "run_id >= ? AND run_id < ?"

    def __init__(self, location: Path | str, *, create: bool, timeout: float) -> None:
        self.label = MEMORY if location == MEMORY else Path(location).expanduser()
        self.where = "in memory" if self.label == MEMORY else f"at {self.label}"
        self._conn = self._connect(create, timeout)

    def _connect(self, create: bool, timeout: float) -> sqlite3.Connection:
        path = self.label
        if isinstance(path, Path):
            if not path.exists():
                if not create:
                    raise TraceStoreError(f"no trace store at {path}")
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise TraceStoreError(
                        f"cannot create the directory for the trace store {path}: {exc.strerror or exc}"
                    ) from exc
            elif path.is_dir():
                raise TraceStoreError(f"the trace store path {path} is a directory")
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if path != MEMORY:
                _set_wal(conn, timeout)
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise TraceStoreError(f"cannot open the trace store {self.where}: {exc}") from exc
        return conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    @contextmanager
    def write(self) -> Iterator[SqliteEngine]:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TraceStoreError(f"cannot write to the trace store {self.label}: {exc}") from exc
        try:
            yield self
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def snapshot(self) -> Iterator[SqliteEngine]:
        self._conn.execute("BEGIN")
        try:
            yield self
        finally:
            self._conn.execute("COMMIT")

    def schema_version(self) -> int:
        return current_version(self._conn)

    def migrate(self, target: int | None = None) -> list[int]:
        try:
            return migrate(self._conn, target, where=self.where)
        except sqlite3.Error as exc:
            raise TraceStoreError(f"cannot open the trace store {self.where}: {exc}") from exc

    def duplicate_run(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "runs.run_id" in str(exc)

    def prefix_params(self, prefix: str) -> list[Any]:
        return [prefix, prefix + "\U0010ffff"]

    @property
    def broken(self) -> bool:
        return False  # a file does not go away under an open connection

    def close(self) -> None:
        self._conn.close()

    @property
    def raw(self) -> sqlite3.Connection:
        """The sqlite3 connection itself (tests and tools that need SQLite's own statements)."""
        return self._conn


def _set_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL, retrying while another process holds the lock: on a new file SQLite can
    answer ``database is locked`` at once, without calling the busy handler, when several
    processes open it together (the first-open migration test saw it)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
