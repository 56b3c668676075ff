"""The PostgreSQL engine: one database that several gateway replicas, on several hosts, share.

Selected by a ``postgresql://`` URL (``$MODELLADDER_TRACES`` or ``--db``). Needs psycopg 3
(``pip install 'modelladder[postgres]'``). Each engine owns one connection in autocommit mode;
:meth:`PostgresEngine.write` wraps a block in one transaction (PostgreSQL takes row locks as
it goes and never fails a writer for another's lock the way ``SQLITE_BUSY`` does, so nothing
needs to be locked up front), :meth:`PostgresEngine.snapshot` in one ``REPEATABLE READ READ
ONLY`` transaction. ``lock_timeout`` is the store's ``timeout``: a writer stuck behind a lock
fails with a clear error instead of hanging.

Migrations run one per transaction under a transaction-scoped advisory lock, with the version
re-read after the lock is taken, so replicas that start at once against a fresh database apply
each migration exactly once. PostgreSQL's DDL is transactional: a failing migration leaves
nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from modelladder.traces.engine import Engine
from modelladder.traces.errors import SchemaVersionError, TraceStoreError
from modelladder.traces.paths import redact_url

if TYPE_CHECKING:
    import psycopg

__all__ = ["MIGRATION_LOCK", "PostgresEngine"]

#: the advisory lock key migrations take (``pg_advisory_xact_lock``): "mltraces" as 8 bytes
MIGRATION_LOCK = int.from_bytes(b"mltraces", "big") - (1 << 63)

_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS _migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


def _driver() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise TraceStoreError(
            "a PostgreSQL trace store needs psycopg 3: pip install 'modelladder[postgres]'"
        ) from exc
    return psycopg


@lru_cache(maxsize=256)
def _paramstyle(sql: str) -> str:
    """``?`` placeholders (the store's, SQLite's) as psycopg's ``%s``. The store's queries hold
    no ``?`` or ``%`` inside string literals, so a plain replacement is exact."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Row(tuple[Any, ...]):
    """A row readable by position and by column name, like :class:`sqlite3.Row`."""

    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> Any:
    names = {c.name: i for i, c in enumerate(cursor.description or ())}
    cls = type("Row", (_Row,), {"_names": names, "__slots__": ()})
    return lambda values: cls(values)


class PostgresEngine(Engine):
    # tags are JSON text (kept byte for byte, like SQLite's); ->> reads one key as text
    tag_clause = "(r.tags::jsonb ->> ?) = ?"
    prefix_clause = "starts_with(run_id, ?)"

    def __init__(self, url: str, *, create: bool, timeout: float) -> None:
        self._psycopg = _driver()
        self.errors = (self._psycopg.Error,)
        self.label = redact_url(url)
        self.where = f"at {self.label}"
        self._conn = self._connect(url, timeout)
        if not create:
            try:
                empty = self.schema_version() == 0
            except self.errors as exc:
                self._conn.close()
                raise TraceStoreError(f"cannot read the trace store {self.where}: {exc}") from exc
            if empty:
                self._conn.close()
                raise TraceStoreError(
                    f"no trace store at {self.label} (the database has no modelladder tables)"
                )

    def _connect(self, url: str, timeout: float) -> psycopg.Connection[Any]:
        psycopg = self._psycopg
        try:
            conn = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=max(2, int(timeout)),
                row_factory=_row_factory,
                application_name="modelladder",
            )
        except psycopg.Error as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise TraceStoreError(f"cannot connect to the trace store {self.where}: {detail}") from exc
        try:
            conn.execute(f"SET lock_timeout = {int(timeout * 1000)}")
            conn.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error as exc:
            conn.close()
            raise TraceStoreError(f"cannot open the trace store {self.where}: {exc}") from exc
        return conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(_paramstyle(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_paramstyle(sql), rows)

    @contextmanager
    def write(self) -> Iterator[PostgresEngine]:
        with self._conn.transaction():
            yield self

    @contextmanager
    def snapshot(self) -> Iterator[PostgresEngine]:
        # one round trip to open it (transaction() + SET TRANSACTION would take two)
        self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        try:
            yield self
        finally:
            if not self.broken:
                self._conn.execute("COMMIT")  # after an error PostgreSQL turns this into ROLLBACK

    def schema_version(self) -> int:
        row = self._conn.execute("SELECT to_regclass('_migrations') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return 0
        found = self._conn.execute("SELECT COALESCE(MAX(version), 0) FROM _migrations").fetchone()
        return int(found[0]) if found else 0

    def _check_not_newer(self, version: int, latest: int) -> None:
        if version > latest:
            raise SchemaVersionError(
                f"the trace store {self.where} has schema version {version}, newer than this modelladder "
                f"supports (version {latest}); upgrade modelladder or use another store"
            )

    def migrate(self, target: int | None = None) -> list[int]:
        from modelladder.traces import migrations  # read at call time: tests add migrations

        latest = migrations.LATEST_VERSION
        target = latest if target is None else target
        if not 0 <= target <= latest:
            raise ValueError(f"unknown target schema version {target} (latest is {latest})")
        try:
            version = self.schema_version()
            self._check_not_newer(version, latest)  # fail before taking any lock
            if version >= target:
                return []
            applied: list[int] = []
            for migration in migrations.MIGRATIONS:
                if migration.version > target:
                    break
                with self._conn.transaction():
                    self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                    self._conn.execute(_CREATE_MIGRATIONS_TABLE)
                    version = self.schema_version()  # re-read under the lock: a replica may have migrated
                    self._check_not_newer(version, latest)
                    if migration.version > version:
                        if not migration.postgres.strip():
                            raise TraceStoreError(
                                f"migration {migration.version} ({migration.name}) has no PostgreSQL form"
                            )
                        self._conn.execute(migration.postgres)  # several statements, no parameters
                        self._conn.execute(
                            "INSERT INTO _migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                            (migration.version, migration.name, datetime.now(UTC).isoformat()),
                        )
                        applied.append(migration.version)
            return applied
        except self._psycopg.Error as exc:
            raise TraceStoreError(f"cannot open the trace store {self.where}: {exc}") from exc

    def duplicate_run(self, exc: BaseException) -> bool:
        diag = getattr(exc, "diag", None)
        return isinstance(exc, self._psycopg.errors.UniqueViolation) and (
            getattr(diag, "constraint_name", None) == "runs_pkey"
        )

    def prefix_params(self, prefix: str) -> list[Any]:
        return [prefix]

    @property
    def broken(self) -> bool:
        return bool(self._conn.closed or self._conn.broken)

    def close(self) -> None:
        self._conn.close()

    @property
    def raw(self) -> psycopg.Connection[Any]:
        """The psycopg connection itself (tests and tools that need PostgreSQL's own statements)."""
        return self._conn
