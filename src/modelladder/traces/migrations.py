"""Versioned schema migrations for the trace store.

:data:`MIGRATIONS` is an ordered list of ``(version, name, sql)``. Each migration runs in its
own ``BEGIN IMMEDIATE`` transaction together with the row recording it in ``_migrations``, so a
migration is either fully applied and recorded or not at all, and two processes opening a fresh
store at once cannot both apply it (the second re-reads the version under the write lock).

Each migration is written twice, once per database, with the same version and name: ``sql``
for SQLite, ``postgres`` for PostgreSQL (8-byte ``DOUBLE PRECISION`` where SQLite says ``REAL``,
identity columns for ``AUTOINCREMENT``, ``COLLATE "C"`` on the text columns the store orders or
compares so both sort byte-wise, and an identity ``rowid`` on ``runs`` for the tie-breaks SQLite
gets from its own rowid). PostgreSQL's are applied by :mod:`modelladder.traces.postgres`.

Never edit a shipped migration: append a new one, in both spellings.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import NamedTuple

from modelladder.traces.errors import SchemaVersionError, TraceStoreError

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration", "current_version", "migrate"]


class Migration(NamedTuple):
    """One schema step: ``sql`` in SQLite's dialect, ``postgres`` the same step in PostgreSQL's."""

    version: int
    name: str
    sql: str
    postgres: str = ""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "base tables",
        """
        CREATE TABLE runs (
            run_id            TEXT PRIMARY KEY,
            created_at        TEXT NOT NULL,
            step              TEXT NOT NULL,
            contract_digest   TEXT,
            messages          TEXT NOT NULL,
            outcome           TEXT NOT NULL CHECK (outcome IN ('resolved', 'unresolved')),
            reason            TEXT,
            rung              TEXT,
            placement         TEXT,
            text              TEXT,
            value             TEXT,
            latency_s         REAL NOT NULL DEFAULT 0,
            cost_usd          REAL NOT NULL DEFAULT 0,
            prompt_tokens     INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            tags              TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE attempts (
            run_id               TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            idx                  INTEGER NOT NULL,
            rung                 TEXT NOT NULL,
            placement            TEXT NOT NULL,
            text                 TEXT NOT NULL DEFAULT '',
            value                TEXT,
            verdict_ok           INTEGER CHECK (verdict_ok IN (0, 1)),
            verdict_reason       TEXT,
            verdict_detail       TEXT,
            mean_logprob         REAL,
            min_logprob          REAL,
            n_value_tokens       INTEGER,
            prompt_tokens        INTEGER NOT NULL DEFAULT 0,
            completion_tokens    INTEGER NOT NULL DEFAULT 0,
            cached_prompt_tokens INTEGER NOT NULL DEFAULT 0,
            latency_s            REAL NOT NULL DEFAULT 0,
            cost_usd             REAL NOT NULL DEFAULT 0,
            finish_reason        TEXT,
            error                TEXT,
            error_detail         TEXT,
            escalation_reason    TEXT,
            accepted             INTEGER NOT NULL DEFAULT 0 CHECK (accepted IN (0, 1)),
            PRIMARY KEY (run_id, idx)
        );
        """,
        postgres="""
        CREATE TABLE runs (
            rowid             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
            run_id            TEXT COLLATE "C" PRIMARY KEY,
            created_at        TEXT COLLATE "C" NOT NULL,
            step              TEXT COLLATE "C" NOT NULL,
            contract_digest   TEXT,
            messages          TEXT NOT NULL,
            outcome           TEXT NOT NULL CHECK (outcome IN ('resolved', 'unresolved')),
            reason            TEXT,
            rung              TEXT,
            placement         TEXT,
            text              TEXT,
            value             TEXT,
            latency_s         DOUBLE PRECISION NOT NULL DEFAULT 0,
            cost_usd          DOUBLE PRECISION NOT NULL DEFAULT 0,
            prompt_tokens     BIGINT NOT NULL DEFAULT 0,
            completion_tokens BIGINT NOT NULL DEFAULT 0,
            tags              TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE attempts (
            run_id               TEXT COLLATE "C" NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            idx                  INTEGER NOT NULL,
            rung                 TEXT NOT NULL,
            placement            TEXT NOT NULL,
            text                 TEXT NOT NULL DEFAULT '',
            value                TEXT,
            verdict_ok           INTEGER CHECK (verdict_ok IN (0, 1)),
            verdict_reason       TEXT,
            verdict_detail       TEXT,
            mean_logprob         DOUBLE PRECISION,
            min_logprob          DOUBLE PRECISION,
            n_value_tokens       BIGINT,
            prompt_tokens        BIGINT NOT NULL DEFAULT 0,
            completion_tokens    BIGINT NOT NULL DEFAULT 0,
            cached_prompt_tokens BIGINT NOT NULL DEFAULT 0,
            latency_s            DOUBLE PRECISION NOT NULL DEFAULT 0,
            cost_usd             DOUBLE PRECISION NOT NULL DEFAULT 0,
            finish_reason        TEXT,
            error                TEXT,
            error_detail         TEXT,
            escalation_reason    TEXT,
            accepted             INTEGER NOT NULL DEFAULT 0 CHECK (accepted IN (0, 1)),
            PRIMARY KEY (run_id, idx)
        );
""",
    ),
    Migration(
        2,
        "feedback columns and listing indexes",
        """
        ALTER TABLE runs ADD COLUMN feedback_success INTEGER CHECK (feedback_success IN (0, 1));
        ALTER TABLE runs ADD COLUMN feedback_note TEXT;
        ALTER TABLE runs ADD COLUMN feedback_at TEXT;
        CREATE INDEX runs_created_at ON runs (created_at);
        CREATE INDEX runs_step_created_at ON runs (step, created_at);
        """,
        postgres="""
        ALTER TABLE runs ADD COLUMN feedback_success INTEGER CHECK (feedback_success IN (0, 1));
        ALTER TABLE runs ADD COLUMN feedback_note TEXT;
        ALTER TABLE runs ADD COLUMN feedback_at TEXT COLLATE "C";
        CREATE INDEX runs_created_at ON runs (created_at);
        CREATE INDEX runs_step_created_at ON runs (step, created_at);
""",
    ),
    Migration(
        3,
        "the contract itself (kind + spec), so a trace is a complete training example",
        """
        ALTER TABLE runs ADD COLUMN contract TEXT;
        """,
        postgres="""
        ALTER TABLE runs ADD COLUMN contract TEXT;
""",
    ),
    Migration(
        4,
        "append-only labels, episode and config digest per run, gate signals, versioned calibrations",
        # Labels are rows, never an UPDATE over the last one: every label keeps its source and
        # time, so a gate can be refitted on exactly what was known when. The feedback columns
        # of version 2 stay (SQLite cannot drop a CHECKed column in place) but are no longer
        # written; their values move here as 'feedback' rows.
        """
        CREATE TABLE labels (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id      TEXT REFERENCES runs (run_id) ON DELETE CASCADE,
            attempt_idx INTEGER,
            episode_id  TEXT,
            kind        TEXT NOT NULL,
            value       REAL NOT NULL,
            source      TEXT NOT NULL CHECK (source IN ('teacher', 'feedback', 'checker')),
            note        TEXT,
            detail      TEXT,
            created_at  TEXT NOT NULL,
            CHECK (run_id IS NOT NULL OR episode_id IS NOT NULL)
        );
        CREATE INDEX labels_run ON labels (run_id, attempt_idx);
        CREATE INDEX labels_episode ON labels (episode_id);
        CREATE INDEX labels_created_at ON labels (created_at);
        INSERT INTO labels (run_id, attempt_idx, kind, value, source, note, created_at)
            SELECT run_id, NULL, 'success', feedback_success, 'feedback', feedback_note,
                   COALESCE(feedback_at, created_at)
            FROM runs WHERE feedback_success IS NOT NULL ORDER BY feedback_at, rowid;
        ALTER TABLE runs ADD COLUMN step_key TEXT;
        ALTER TABLE runs ADD COLUMN episode_id TEXT;
        ALTER TABLE runs ADD COLUMN config_digest TEXT;
        ALTER TABLE runs ADD COLUMN gate_version INTEGER;
        UPDATE runs SET step_key = CASE
            WHEN step = 'default' AND contract_digest IS NOT NULL THEN 'contract:' || contract_digest
            ELSE step END;
        CREATE INDEX runs_step_key ON runs (step_key, created_at);
        CREATE INDEX runs_episode ON runs (episode_id);
        ALTER TABLE attempts ADD COLUMN signals TEXT;
        CREATE TABLE calibrations (
            version         INTEGER PRIMARY KEY AUTOINCREMENT,
            step_key        TEXT NOT NULL,
            contract_digest TEXT,
            created_at      TEXT NOT NULL,
            alpha           REAL NOT NULL CHECK (alpha > 0 AND alpha < 1),
            confidence      REAL NOT NULL CHECK (confidence > 0 AND confidence < 1),
            certified       INTEGER NOT NULL CHECK (certified IN (0, 1)),
            body            TEXT NOT NULL
        );
        CREATE INDEX calibrations_step ON calibrations (step_key, version);
        """,
        postgres="""
        CREATE TABLE labels (
            id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            run_id      TEXT COLLATE "C" REFERENCES runs (run_id) ON DELETE CASCADE,
            attempt_idx INTEGER,
            episode_id  TEXT COLLATE "C",
            kind        TEXT NOT NULL,
            value       DOUBLE PRECISION NOT NULL,
            source      TEXT NOT NULL CHECK (source IN ('teacher', 'feedback', 'checker')),
            note        TEXT,
            detail      TEXT,
            created_at  TEXT COLLATE "C" NOT NULL,
            CHECK (run_id IS NOT NULL OR episode_id IS NOT NULL)
        );
        CREATE INDEX labels_run ON labels (run_id, attempt_idx);
        CREATE INDEX labels_episode ON labels (episode_id);
        CREATE INDEX labels_created_at ON labels (created_at);
        INSERT INTO labels (run_id, attempt_idx, kind, value, source, note, created_at)
            SELECT run_id, NULL, 'success', feedback_success, 'feedback', feedback_note,
                   COALESCE(feedback_at, created_at)
            FROM runs WHERE feedback_success IS NOT NULL ORDER BY feedback_at, rowid;
        ALTER TABLE runs ADD COLUMN step_key TEXT COLLATE "C";
        ALTER TABLE runs ADD COLUMN episode_id TEXT COLLATE "C";
        ALTER TABLE runs ADD COLUMN config_digest TEXT;
        ALTER TABLE runs ADD COLUMN gate_version INTEGER;
        UPDATE runs SET step_key = CASE
            WHEN step = 'default' AND contract_digest IS NOT NULL THEN 'contract:' || contract_digest
            ELSE step END;
        CREATE INDEX runs_step_key ON runs (step_key, created_at);
        CREATE INDEX runs_episode ON runs (episode_id);
        ALTER TABLE attempts ADD COLUMN signals TEXT;
        CREATE TABLE calibrations (
            version         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            step_key        TEXT COLLATE "C" NOT NULL,
            contract_digest TEXT,
            created_at      TEXT COLLATE "C" NOT NULL,
            alpha           DOUBLE PRECISION NOT NULL CHECK (alpha > 0 AND alpha < 1),
            confidence      DOUBLE PRECISION NOT NULL CHECK (confidence > 0 AND confidence < 1),
            certified       INTEGER NOT NULL CHECK (certified IN (0, 1)),
            body            TEXT NOT NULL
        );
        CREATE INDEX calibrations_step ON calibrations (step_key, version);
""",
    ),
    Migration(
        5,
        "per attempt, what the model chose on a tool step (call / answer / decline)",
        """
        ALTER TABLE attempts ADD COLUMN decision TEXT;
        """,
        postgres="""
        ALTER TABLE attempts ADD COLUMN decision TEXT;
""",
    ),
    Migration(
        6,
        "per attempt, what the edge rung was shown instead of the step as sent (examples, tools, compaction)",
        """
        ALTER TABLE attempts ADD COLUMN shaping TEXT;
        """,
        postgres="""
        ALTER TABLE attempts ADD COLUMN shaping TEXT;
""",
    ),
)

LATEST_VERSION: int = MIGRATIONS[-1].version

_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS _migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


def _statements(sql: str) -> Iterator[str]:
    """Split a script into complete statements (``executescript`` would commit our transaction)."""
    buf = ""
    for piece in sql.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \t\r\n;"):
                yield buf.strip()
            buf = ""
    if buf.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement in migration: {buf.strip()[:80]!r}")


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version of an open store: 0 for an empty database."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'"
    ).fetchone()
    if not exists:
        return 0
    return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM _migrations").fetchone()[0])


def _check_not_newer(version: int, where: str) -> None:
    if version > LATEST_VERSION:
        raise SchemaVersionError(
            f"the trace store {where}has schema version {version}, newer than this modelladder "
            f"supports (version {LATEST_VERSION}); upgrade modelladder or use another store"
        )


def migrate(conn: sqlite3.Connection, target: int | None = None, *, where: str = "") -> list[int]:
    """Bring the schema up to ``target`` (default: the latest) and return the versions applied.

    ``conn`` must be in autocommit mode (``isolation_level=None``) and not inside a transaction.
    Raises :class:`SchemaVersionError` if the store is newer than this code.
    """
    if conn.isolation_level is not None or conn.in_transaction:
        raise TraceStoreError("migrate() needs an autocommit connection outside any transaction")
    target = LATEST_VERSION if target is None else target
    if not 0 <= target <= LATEST_VERSION:
        raise ValueError(f"unknown target schema version {target} (latest is {LATEST_VERSION})")
    where = f"{where} " if where else ""
    version = current_version(conn)
    _check_not_newer(version, where)  # fail before taking any write lock
    if version >= target:
        return []  # the common case: a read, no write lock
    conn.execute(_CREATE_MIGRATIONS_TABLE)
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version > target:
            break
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = current_version(conn)  # re-read under the write lock: another process may have migrated
            _check_not_newer(version, where)
            if migration.version > version:
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO _migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, datetime.now(UTC).isoformat()),
                )
                applied.append(migration.version)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return applied
