"""Labels and calibrations in the trace store: append-only rows, never an update in place.

A label says whether an answer was right, and who says so: ``teacher`` (a larger rung answered
the same input and the two agree under the contract's equivalence), ``feedback`` (a person or a
downstream system, ``/v1/feedback``) or ``checker`` (a benchmark's scorer). Every label is a row
with its target (a run, one attempt of it, or an episode), kind, value, source and time, the way
TensorZero keeps feedback: a gate can then be refitted on exactly what was known at any moment,
and a label given later never erases the one before it.

Calibrations are versioned rows too: the learning package writes one per step and a running
ladder polls :meth:`LabelsMixin.calibration_version` (one indexed ``MAX``) to pick up a new one.
This module only stores and reads; what a calibration *means* is :mod:`modelladder.learning`'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelladder.traces.engine import Engine, Row
from modelladder.traces.errors import TraceStoreError, UnknownRunError

__all__ = ["CalibrationRow", "LabelRecord", "LabelsMixin", "SOURCES"]

SOURCES = ("teacher", "feedback", "checker")


@dataclass(frozen=True)
class LabelRecord:
    """One label row. ``attempt_idx`` is ``None`` for a label on the whole run (feedback)."""

    id: int
    run_id: str | None
    attempt_idx: int | None
    episode_id: str | None
    kind: str
    value: float
    source: str
    note: str | None
    detail: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class CalibrationRow:
    """One stored calibration, its body still raw JSON text: a corrupt body must be reported
    by whoever parses it, not break the listing of the others."""

    version: int
    step_key: str
    contract_digest: str | None
    created_at: datetime
    alpha: float
    confidence: float
    certified: bool
    body: str


def _label(row: Row) -> LabelRecord:
    return LabelRecord(
        id=row["id"],
        run_id=row["run_id"],
        attempt_idx=row["attempt_idx"],
        episode_id=row["episode_id"],
        kind=row["kind"],
        value=float(row["value"]),
        source=row["source"],
        note=row["note"],
        detail=json.loads(row["detail"]) if row["detail"] else {},
        created_at=datetime.fromisoformat(row["created_at"]),
    )


def _calibration(row: Row) -> CalibrationRow:
    return CalibrationRow(
        version=row["version"],
        step_key=row["step_key"],
        contract_digest=row["contract_digest"],
        created_at=datetime.fromisoformat(row["created_at"]),
        alpha=float(row["alpha"]),
        confidence=float(row["confidence"]),
        certified=bool(row["certified"]),
        body=row["body"],
    )


class LabelsMixin:
    """Label and calibration methods of :class:`~modelladder.traces.store.TraceStore`."""

    # provided by TraceStore
    path: Any
    _errors: tuple[type[BaseException], ...]

    def _write(self) -> AbstractContextManager[Engine]:  # pragma: no cover - TraceStore's
        raise NotImplementedError

    def _read(self, snapshot: bool = False) -> AbstractContextManager[Engine]:  # pragma: no cover
        raise NotImplementedError

    # -- labels -------------------------------------------------------------------------------

    def add_label(
        self,
        run_id: str | None,
        *,
        kind: str,
        value: float,
        source: str,
        attempt_idx: int | None = None,
        episode_id: str | None = None,
        note: str | None = None,
        detail: dict[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> int:
        """Append one label and return its id. Unknown run: :class:`UnknownRunError`."""
        if source not in SOURCES:
            raise ValueError(f"label source must be one of {', '.join(SOURCES)}, not {source!r}")
        if run_id is None and episode_id is None:
            raise ValueError("a label needs a run_id or an episode_id")
        if not kind:
            raise ValueError("a label needs a kind")
        stamp = (created_at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")
        try:
            return self._insert_label(
                run_id, attempt_idx, episode_id, kind, value, source, note, detail, stamp
            )
        except self._errors as exc:
            raise TraceStoreError(f"cannot add a {source} label to run {run_id!r}: {exc}") from exc

    def _insert_label(
        self, run_id: str | None, attempt_idx: int | None, episode_id: str | None, kind: str,
        value: float, source: str, note: str | None, detail: dict[str, Any] | None, stamp: str,
    ) -> int:  # fmt: skip
        with self._write() as conn:
            if run_id is not None:
                found = conn.execute("SELECT episode_id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
                if found is None:
                    raise UnknownRunError(f"no run with id {run_id!r} in the trace store {self.path}")
                episode_id = episode_id or found["episode_id"]
            if attempt_idx is not None:
                hit = conn.execute(
                    "SELECT 1 FROM attempts WHERE run_id = ? AND idx = ?", (run_id, attempt_idx)
                ).fetchone()
                if hit is None:
                    raise UnknownRunError(f"run {run_id!r} has no attempt {attempt_idx}")
            row = conn.execute(
                "INSERT INTO labels (run_id, attempt_idx, episode_id, kind, value, source, note, detail, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    run_id,
                    attempt_idx,
                    episode_id,
                    kind,
                    float(value),
                    source,
                    note,
                    json.dumps(detail, ensure_ascii=False) if detail else None,
                    stamp,
                ),
            ).fetchall()  # fmt: skip (fetchall: a RETURNING statement must finish before COMMIT)
            return int(row[0][0])

    def labels(self, run_id: str | None = None, *, source: str | None = None) -> list[LabelRecord]:
        """Labels in the order they were given, optionally of one run and/or one source."""
        clauses, params = [], []
        if run_id is not None:
            clauses.append("run_id = ?")
            params.append(run_id)
        if source is not None:
            clauses.append("source = ?")
            params.append(source)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._read() as db:
            rows = db.execute(f"SELECT * FROM labels{where} ORDER BY id", params).fetchall()
        return [_label(r) for r in rows]

    def iter_step_runs(self, key: str) -> Iterator[str]:
        """The run ids of one step key, oldest first (what a calibration reads)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT run_id FROM runs WHERE COALESCE(step_key, step) = ? ORDER BY created_at, rowid",
                (key,),
            ).fetchall()
        yield from (r[0] for r in rows)

    def step_keys(self) -> list[tuple[str, int, int]]:
        """Every step key with its number of runs and of labels, most runs first."""
        with self._read() as db:
            rows = db.execute(
                # two grouped counts joined on the key (PostgreSQL refuses a correlated subquery
                # on the grouped expression that SQLite accepts)
                "SELECT g.k AS k, g.n AS n, COALESCE(lc.nl, 0) AS nl FROM "
                "(SELECT COALESCE(step_key, step) AS k, COUNT(*) AS n FROM runs GROUP BY 1) g LEFT JOIN "
                "(SELECT COALESCE(r.step_key, r.step) AS k, COUNT(*) AS nl FROM labels l "
                " JOIN runs r ON l.run_id = r.run_id GROUP BY 1) lc ON lc.k = g.k "
                "ORDER BY g.n DESC, g.k"
            ).fetchall()
        return [(r["k"], int(r["n"]), int(r["nl"])) for r in rows]

    def accepted_labels_since(self, step_key: str, since: datetime) -> list[tuple[str, float]]:
        """``(rung, value)`` of the labels on *accepted* edge answers of a step, on runs made
        and labels given after ``since`` (what drift detection tests a calibration against).
        One label per answer: the latest one."""
        stamp = since.astimezone(UTC).isoformat(timespec="microseconds")
        sql = """
            SELECT a.rung AS rung, (
                SELECT l.value FROM labels l
                WHERE l.run_id = a.run_id AND l.created_at > ? AND (
                    (l.attempt_idx = a.idx AND l.kind = 'correct')
                    OR (l.attempt_idx IS NULL AND l.kind = 'success'))
                ORDER BY l.id DESC LIMIT 1) AS value
            FROM attempts a JOIN runs r ON r.run_id = a.run_id
            WHERE COALESCE(r.step_key, r.step) = ? AND r.created_at > ?
              AND a.accepted = 1 AND a.placement = 'edge'
        """
        with self._read() as db:
            rows = db.execute(sql, (stamp, step_key, stamp)).fetchall()
        return [(r["rung"], float(r["value"])) for r in rows if r["value"] is not None]

    # -- calibrations -------------------------------------------------------------------------

    def save_calibration(
        self,
        step_key: str,
        *,
        contract_digest: str | None,
        alpha: float,
        confidence: float,
        certified: bool,
        body: dict[str, Any],
    ) -> int:
        """Write a new calibration version in one transaction and return its version number."""
        text = json.dumps(body, ensure_ascii=False, allow_nan=False)
        try:
            with self._write() as conn:
                row = conn.execute(
                    "INSERT INTO calibrations (step_key, contract_digest, created_at, alpha, confidence, "
                    "certified, body) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING version",
                    (step_key, contract_digest, datetime.now(UTC).isoformat(timespec="microseconds"),
                     float(alpha), float(confidence), int(bool(certified)), text),
                ).fetchall()  # fmt: skip
                return int(row[0][0])
        except self._errors as exc:
            raise TraceStoreError(f"cannot save the calibration of step {step_key!r}: {exc}") from exc

    def calibration_version(self) -> int:
        """The newest calibration version over all steps (0: none). Cheap: a running ladder
        polls it to notice a new calibration without a restart."""
        with self._read() as db:
            return int(db.execute("SELECT COALESCE(MAX(version), 0) FROM calibrations").fetchone()[0])

    def calibrations(self, step_key: str | None = None) -> list[CalibrationRow]:
        """Stored calibrations, newest first, optionally of one step key."""
        where, params = ("WHERE step_key = ?", [step_key]) if step_key is not None else ("", [])
        with self._read() as db:
            rows = db.execute(f"SELECT * FROM calibrations {where} ORDER BY version DESC", params).fetchall()
        return [_calibration(r) for r in rows]
