"""The trace store: every step run and every attempt, in SQLite (default) or PostgreSQL.

:class:`TraceStore` writes its queries once; an :class:`~modelladder.traces.engine.Engine`
carries what differs between the databases (:mod:`modelladder.traces.sqlite`,
:mod:`modelladder.traces.postgres`). A location that is a ``postgresql://`` URL selects
PostgreSQL, anything else is a SQLite file (or ``":memory:"``).

Each store owns one connection, so any number of stores, in any number of threads, processes
and (with PostgreSQL) hosts, can write the same store. A store is also safe to share between
threads (an internal lock serialises its use of the connection), notices when it was inherited
across ``fork()`` and reconnects, and reconnects when its PostgreSQL connection was lost.

Every write is one transaction: a run lands with all its attempts or not at all. On SQLite it
takes the write lock up front (``BEGIN IMMEDIATE``) so a writer waits on ``busy_timeout``
instead of failing with ``SQLITE_BUSY`` half-way through.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from modelladder.ladder.keys import step_key
from modelladder.traces.connect import open_engine
from modelladder.traces.engine import Engine, Row
from modelladder.traces.errors import TraceStoreError, UnknownRunError
from modelladder.traces.labels import LabelsMixin
from modelladder.traces.paths import default_traces_location
from modelladder.traces.records import AttemptRecord, RunRecord, RunSummary
from modelladder.traces.sqlite import MEMORY

if TYPE_CHECKING:  # not at runtime: modelladder.ladder may import the trace store itself
    from modelladder.ladder.outcome import Attempt, StepResult

__all__ = ["MEMORY", "OUTCOMES", "TraceStore"]

OUTCOMES = ("resolved", "unresolved")


def _json_default(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if callable(dump) and not isinstance(obj, type):  # a Pydantic model instance
        return dump(mode="json")
    return str(obj)


def _dumps(obj: Any, what: str, run_id: str) -> str:
    try:
        return json.dumps(obj, default=_json_default, ensure_ascii=False)
    except Exception as exc:
        raise TraceStoreError(
            f"cannot serialise the {what} of run {run_id!r} as JSON: {type(exc).__name__}: {exc}"
        ) from exc


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _as_bool(v: int | None) -> bool | None:
    return None if v is None else bool(v)


def _filters(
    db: Engine, step: str | None, outcome: str | None, tag: tuple[str, str] | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if step is not None:
        clauses.append("r.step = ?")
        params.append(step)
    if outcome is not None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        clauses.append("r.outcome = ?")
        params.append(outcome)
    if tag is not None:
        key, value = tag
        clauses.append(db.tag_clause)
        params.extend([key, str(value)])
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


_SUMMARY_COLUMNS = """
    r.run_id, r.created_at, r.step, r.outcome, r.reason, r.rung, r.placement,
    (SELECT COUNT(*) FROM attempts a WHERE a.run_id = r.run_id) AS n_attempts,
    r.latency_s, r.cost_usd, r.prompt_tokens, r.completion_tokens, r.tags,
    (SELECT CAST(l.value AS INTEGER) FROM labels l WHERE l.run_id = r.run_id AND l.source = 'feedback'
     AND l.kind = 'success' ORDER BY l.id DESC LIMIT 1) AS feedback_success
"""
# the latest feedback label of a run (labels are append-only; the newest one is in force)
_LATEST_FEEDBACK = (
    "SELECT {col} FROM labels l WHERE l.run_id = r.run_id AND l.source = 'feedback' "
    "AND l.kind = 'success' ORDER BY l.id DESC LIMIT 1"
)

_ATTEMPT_COLUMNS = (
    "run_id", "idx", "rung", "placement", "text", "value", "verdict_ok", "verdict_reason",
    "verdict_detail", "mean_logprob", "min_logprob", "n_value_tokens", "prompt_tokens",
    "completion_tokens", "cached_prompt_tokens", "latency_s", "cost_usd", "finish_reason", "error",
    "error_detail", "escalation_reason", "accepted", "signals", "decision", "shaping",
)  # fmt: skip
_INSERT_ATTEMPT = (
    f"INSERT INTO attempts ({', '.join(_ATTEMPT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _ATTEMPT_COLUMNS)})"
)

_RUN_COLUMNS = (
    "run_id", "created_at", "step", "contract_digest", "messages", "outcome", "reason", "rung",
    "placement", "text", "value", "latency_s", "cost_usd", "prompt_tokens", "completion_tokens", "tags",
    "contract", "step_key", "episode_id", "config_digest", "gate_version",
)  # fmt: skip
_INSERT_RUN = f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' for _ in _RUN_COLUMNS)})"


def _summary(row: Row) -> dict[str, Any]:
    return {
        "run_id": row["run_id"],
        "created_at": datetime.fromisoformat(row["created_at"]),
        "step": row["step"],
        "outcome": row["outcome"],
        "reason": row["reason"],
        "rung": row["rung"],
        "placement": row["placement"],
        "n_attempts": row["n_attempts"],
        "latency_s": row["latency_s"],
        "cost_usd": row["cost_usd"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "tags": _loads(row["tags"]) or {},
        "feedback_success": _as_bool(row["feedback_success"]),
    }


def _attempt(row: Row) -> AttemptRecord:
    return AttemptRecord(
        index=row["idx"],
        rung=row["rung"],
        placement=row["placement"],
        text=row["text"],
        value=_loads(row["value"]),
        verdict_ok=_as_bool(row["verdict_ok"]),
        verdict_reason=row["verdict_reason"],
        verdict_detail=row["verdict_detail"],
        mean_logprob=row["mean_logprob"],
        min_logprob=row["min_logprob"],
        n_value_tokens=row["n_value_tokens"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cached_prompt_tokens=row["cached_prompt_tokens"],
        latency_s=row["latency_s"],
        cost_usd=row["cost_usd"],
        finish_reason=row["finish_reason"],
        error=row["error"],
        error_detail=row["error_detail"],
        escalation_reason=row["escalation_reason"],
        accepted=bool(row["accepted"]),
        signals=_loads(row["signals"]) or {},
        decision=row["decision"],
        shaping=_loads(row["shaping"]),
    )


class TraceStore(LabelsMixin):
    """A trace store. ``path`` is a SQLite file, ``":memory:"`` (a private in-memory store) or a
    ``postgresql://`` URL; ``None`` means ``$MODELLADDER_TRACES``, else ``data_dir() /
    "traces.sqlite"``. With ``create=False`` a missing store (no file; a database without the
    tables) is an error instead of being created. Opening upgrades an older schema; a newer one
    raises :class:`SchemaVersionError`; a database that cannot be reached, :class:`TraceStoreError`.
    """

    def __init__(self, path: str | Path | None = None, *, create: bool = True, timeout: float = 10.0) -> None:
        self._location: str | Path = default_traces_location() if path is None else path
        self._create = create
        self._timeout = timeout
        self._lock = threading.RLock()
        self._conn: Engine | None = None
        self._inherited: list[Engine] = []
        self._pid = os.getpid()
        self._conn = self._connect()
        self.path: Path | str = self._conn.label
        self._errors = self._conn.errors

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> Engine:
        engine = open_engine(self._location, create=self._create, timeout=self._timeout)
        try:
            engine.migrate()
        except BaseException:
            engine.close()
            raise
        return engine

    @property
    def _db(self) -> Engine:
        if self._conn is None:
            raise TraceStoreError("the trace store is closed")
        if os.getpid() != self._pid:
            # Inherited across fork(): never use (or close) the parent's connection here.
            self._inherited.append(self._conn)
            self._pid = os.getpid()
            self._conn = self._connect()
        elif self._conn.broken:  # the server went away (restart, network): connect again
            fresh = self._connect()  # while it is still down this raises, and the next call retries
            self._conn.close()
            self._conn = fresh
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[Engine]:
        """One write transaction, under the store's lock."""
        with self._lock:
            db = self._db
            with db.write():
                yield db

    @contextmanager
    def _read(self, snapshot: bool = False) -> Iterator[Engine]:
        """The connection for reading, under the store's lock (``snapshot``: one consistent view
        for several statements); a database error becomes one :class:`TraceStoreError`."""
        with self._lock:
            db = self._db
            try:
                if snapshot:
                    with db.snapshot():
                        yield db
                else:
                    yield db
            except db.errors as exc:
                raise TraceStoreError(f"cannot read the trace store {self.path}: {exc}") from exc

    @property
    def schema_version(self) -> int:
        with self._read() as db:
            return db.schema_version()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and os.getpid() == self._pid:
                self._conn.close()
            self._conn = None

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TraceStore({str(self.path)!r})"

    # -- writing ------------------------------------------------------------------------------

    def record(self, result: StepResult, *, created_at: datetime | None = None) -> None:
        """Write a run and all its attempts in one transaction: all of it lands or none of it."""
        run_id = result.run_id
        outcome = result.outcome
        if outcome not in OUTCOMES:
            raise TraceStoreError(
                f"run {run_id!r}: only Resolved or Unresolved results can be recorded "
                f"(outcome is {outcome!r})"
            )
        resolved = outcome == "resolved"
        if resolved and not result.attempts:
            raise TraceStoreError(f"run {run_id!r} is resolved but has no attempts")
        accepted = result.attempts[-1] if resolved else None
        stamp = (created_at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")
        # serialised before the transaction: a value that cannot be written costs no lock
        run_row = (
            run_id,
            stamp,
            result.step,
            result.contract_digest,
            _dumps(result.messages, "messages", run_id),
            outcome,
            None if resolved else (getattr(result, "reason", None) or None),
            accepted.rung if accepted else None,
            accepted.placement if accepted else None,
            accepted.text if accepted else None,
            _dumps(accepted.value, "value", run_id) if accepted else None,
            float(result.latency_s),
            float(result.cost_usd),
            int(result.prompt_tokens),
            int(result.completion_tokens),
            _dumps(result.tags or {}, "tags", run_id),
            _dumps(result.contract, "contract", run_id) if result.contract is not None else None,
            result.step_key or step_key(result.step, result.contract_digest),
            result.episode_id,
            result.config_digest,
            result.gate_version,
        )
        attempt_rows = [self._attempt_row(run_id, attempt) for attempt in result.attempts]
        try:
            with self._write() as db:
                db.execute(_INSERT_RUN, run_row)
                if attempt_rows:
                    db.executemany(_INSERT_ATTEMPT, attempt_rows)
        except self._errors as exc:
            if self._conn is not None and self._conn.duplicate_run(exc):
                raise TraceStoreError(f"run {run_id!r} is already recorded") from exc
            raise TraceStoreError(f"cannot record run {run_id!r}: {exc}") from exc

    @staticmethod
    def _attempt_row(run_id: str, a: Attempt) -> tuple[Any, ...]:
        v, c = a.verdict, a.confidence
        return (
            run_id,
            a.index,
            a.rung,
            a.placement,
            a.text or "",
            _dumps(v.value, f"attempt {a.index} value", run_id) if v is not None else None,
            None if v is None else int(bool(v.ok)),
            v.reason if v is not None else None,
            v.detail if v is not None else None,
            c.mean_logprob if c is not None else None,
            c.min_logprob if c is not None else None,
            c.n_value_tokens if c is not None else None,
            int(a.prompt_tokens),
            int(a.completion_tokens),
            int(a.cached_prompt_tokens),
            float(a.latency_s),
            float(a.cost_usd),
            a.finish_reason,
            a.error,
            a.error_detail or None,
            a.escalation_reason,
            int(bool(a.accepted)),
            _dumps(c.signals(), f"attempt {a.index} signals", run_id)
            if c is not None and c.signals()
            else None,
            a.decision,
            _dumps(a.shaping, f"attempt {a.index} shaping", run_id) if a.shaping else None,
        )

    def record_feedback(self, run_id: str, success: bool, note: str | None = None) -> None:
        """Append human/downstream feedback on a run as a ``feedback`` label (the latest one is
        in force; earlier ones stay). Unknown id: :class:`UnknownRunError`."""
        self.add_label(run_id, kind="success", value=float(bool(success)), source="feedback", note=note)

    # -- reading ------------------------------------------------------------------------------

    def list_runs(
        self,
        limit: int | None = 20,
        step: str | None = None,
        outcome: str | None = None,
        tag: tuple[str, str] | None = None,
    ) -> list[RunSummary]:
        """The most recent runs first, optionally filtered. ``limit=None`` returns all of them."""
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        with self._read() as db:
            where, params = _filters(db, step, outcome, tag)
            sql = f"SELECT {_SUMMARY_COLUMNS} FROM runs r{where} ORDER BY r.created_at DESC, r.rowid DESC"
            if limit is not None:
                sql += " LIMIT ?"
                params.append(limit)
            rows = db.execute(sql, params).fetchall()
        return [RunSummary(**_summary(row)) for row in rows]

    def count_runs(
        self, step: str | None = None, outcome: str | None = None, tag: tuple[str, str] | None = None
    ) -> int:
        with self._read() as db:
            where, params = _filters(db, step, outcome, tag)
            return int(db.execute(f"SELECT COUNT(*) FROM runs r{where}", params).fetchone()[0])

    def get_run(self, run_id: str) -> RunRecord:
        """The full run with its attempts. Unknown id: :class:`UnknownRunError` (a ``KeyError``)."""
        with self._read(snapshot=True) as db:  # one snapshot for the run and its attempts
            row = db.execute(
                f"SELECT {_SUMMARY_COLUMNS}, r.contract_digest, r.contract, r.messages, r.text, r.value, "
                f"({_LATEST_FEEDBACK.format(col='l.note')}) AS feedback_note, "
                f"({_LATEST_FEEDBACK.format(col='l.created_at')}) AS feedback_at, "
                "r.step_key, r.episode_id, r.config_digest, r.gate_version FROM runs r WHERE r.run_id = ?",
                (run_id,),
            ).fetchone()
            attempts = db.execute(
                "SELECT * FROM attempts WHERE run_id = ? ORDER BY idx", (run_id,)
            ).fetchall()
        if row is None:
            raise UnknownRunError(f"no run with id {run_id!r} in the trace store {self.path}")
        return RunRecord(
            **_summary(row),
            contract_digest=row["contract_digest"],
            contract=_loads(row["contract"]) if row["contract"] else None,
            messages=_loads(row["messages"]),
            text=row["text"],
            value=_loads(row["value"]),
            feedback_note=row["feedback_note"],
            feedback_at=datetime.fromisoformat(row["feedback_at"]) if row["feedback_at"] else None,
            attempts=[_attempt(a) for a in attempts],
            step_key=row["step_key"] or step_key(row["step"], row["contract_digest"]),
            episode_id=row["episode_id"],
            config_digest=row["config_digest"],
            gate_version=row["gate_version"],
        )

    def match_run_ids(self, prefix: str, limit: int = 10) -> list[str]:
        """Run ids starting with ``prefix`` (for short ids on the command line)."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT run_id FROM runs WHERE {db.prefix_clause} ORDER BY run_id LIMIT ?",
                [*db.prefix_params(prefix), limit],
            ).fetchall()
        return [r[0] for r in rows]

    # -- export -------------------------------------------------------------------------------

    def export_chat_jsonl(
        self,
        fp: TextIO,
        step: str | None = None,
        include_unresolved: bool = False,
        exclude_failed_feedback: bool = True,
        with_metadata: bool = False,
    ) -> int:
        """Write OpenAI chat fine-tuning JSONL, oldest run first, and return the number of lines.

        Each line is ``{"messages": [...input messages..., {"role": "assistant", "content": text}]}``
        where ``text`` is the accepted answer's canonical text (for tool-call contracts too: the
        canonical text the contract parses, not an OpenAI ``tool_calls`` message). Runs with negative
        feedback are skipped unless ``exclude_failed_feedback=False``. With ``include_unresolved``,
        unresolved runs are exported with their *last non-empty* attempt text: unvalidated output,
        so only pass it together with ``with_metadata=True`` to tell them apart. ``with_metadata``
        adds a top-level ``"metadata"`` object (run_id, step, outcome, rung, placement,
        contract_digest, created_at); some fine-tuning tools reject unknown keys, hence off by default.
        """
        clauses: list[str] = []
        params: list[Any] = []
        if step is not None:
            clauses.append("r.step = ?")
            params.append(step)
        if not include_unresolved:
            clauses.append("r.outcome = 'resolved'")
        if exclude_failed_feedback:
            clauses.append(f"COALESCE(({_LATEST_FEEDBACK.format(col='l.value')}), 1) = 1")
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        sql = (
            "SELECT r.run_id, r.created_at, r.step, r.contract_digest, r.messages, r.outcome, r.rung, "
            "r.placement, CASE WHEN r.outcome = 'resolved' THEN r.text ELSE ("
            "  SELECT a.text FROM attempts a WHERE a.run_id = r.run_id AND a.text != '' "
            "  ORDER BY a.idx DESC LIMIT 1) END AS answer "
            f"FROM runs r{where} ORDER BY r.created_at, r.rowid"
        )
        n = 0
        with self._read(snapshot=True) as db:
            for row in db.execute(sql, params):
                answer = row["answer"]
                if answer is None:
                    continue  # an unresolved run where no attempt produced any text
                line: dict[str, Any] = {
                    "messages": [*_loads(row["messages"]), {"role": "assistant", "content": answer}]
                }
                if with_metadata:
                    line["metadata"] = {
                        "run_id": row["run_id"],
                        "step": row["step"],
                        "outcome": row["outcome"],
                        "rung": row["rung"],
                        "placement": row["placement"],
                        "contract_digest": row["contract_digest"],
                        "created_at": row["created_at"],
                    }
                fp.write(json.dumps(line, ensure_ascii=False) + "\n")
                n += 1
        return n
