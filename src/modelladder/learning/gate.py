"""The calibrated gate a running ladder (or gateway) asks: :class:`StoreGate`.

It implements the ladder's one seam (:class:`modelladder.ladder.gate.Gate`) over the trace
store. It picks up a new calibration without a restart by polling
:meth:`~modelladder.traces.TraceStore.calibration_version` -- one indexed ``MAX`` -- at most
every ``poll_s`` seconds; a corrupt newest row is logged and skipped, so the previous valid
calibration of that step stays in force.

Drift: labels given after a calibration on answers it accepted are tested against its bound;
when the live accepted-wrong rate exceeds alpha with confidence 1 - delta (exact binomial
test), the step falls back to escalate-all (``gate:drift``) and says so in the log and in
:meth:`StoreGate.status`, until a new calibration replaces it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelladder.ladder.gate import GateVerdict, SkipVerdict
from modelladder.learning.bound import p_value_above
from modelladder.learning.calibrate import Calibration, CalibrationError, parse
from modelladder.learning.features import from_attempt
from modelladder.learning.request_features import from_request
from modelladder.learning.skip import KIND, SkipCalibration, body_kind, parse_skip

__all__ = ["StoreGate"]

log = logging.getLogger("modelladder.learning")


@dataclass
class _Live:
    n: int = 0
    wrong: int = 0
    drift: bool = False


class StoreGate:
    """Per-step calibrated gates read from a trace store (``store``: a ``TraceStore``), and the
    steps' ex-ante skip predictors (:mod:`modelladder.learning.skip`): one object serves both
    seams of the ladder (``Ladder(gate=g, skip=g)``)."""

    def __init__(
        self,
        store: Any,
        *,
        poll_s: float = 2.0,
        drift_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.poll_s = poll_s
        self.drift_s = drift_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen_version = -1
        self._next_poll = -float("inf")
        self._next_drift = -float("inf")
        self._active: dict[str, Calibration] = {}
        self._skips: dict[str, SkipCalibration] = {}
        self._live: dict[str, _Live] = {}
        self.errors: list[str] = []

    # -- loading ------------------------------------------------------------------------------

    def refresh(self, force: bool = False) -> None:
        """Reload calibrations if a new version was written; re-test drift when due."""
        now = self._clock()
        with self._lock:
            if force or now >= self._next_poll:
                self._next_poll = now + self.poll_s
                version = self.store.calibration_version()
                if version != self._seen_version:
                    self._load()
                    self._seen_version = version
                    self._next_drift = -float("inf")
            if force or now >= self._next_drift:
                self._next_drift = now + self.drift_s
                self._test_drift()

    def _load(self) -> None:
        active: dict[str, Calibration] = {}
        skips: dict[str, SkipCalibration] = {}
        for row in self.store.calibrations():  # newest first: the first valid one per step and kind wins
            kind = body_kind(row)
            if row.step_key in (skips if kind == KIND else active):
                continue
            try:
                if kind == KIND:
                    skips[row.step_key] = parse_skip(row)
                else:
                    active[row.step_key] = parse(row)
            except CalibrationError as exc:
                msg = str(exc)
                if msg not in self.errors:
                    self.errors.append(msg)
                    log.error("%s; the step keeps its previous calibration", msg)
        changed = [
            k for k, c in active.items() if k not in self._active or self._active[k].version != c.version
        ]
        for k in changed:
            c = active[k]
            log.info("gate for step %s: calibration version %d (%s)", k, c.version,
                     f"certified alpha={c.alpha:g}" if c.certified else "not certified: escalates all")  # fmt: skip
            self._live.pop(k, None)
        self._active = active
        self._skips = skips

    def _test_drift(self) -> None:
        for key, cal in self._active.items():
            if not cal.certified:
                continue
            since = datetime.fromisoformat(cal.created_at)
            labels = [v for rung, v in self.store.accepted_labels_since(key, since) if rung in cal.rungs]
            live = _Live(len(labels), sum(v < 0.5 for v in labels))
            live.drift = p_value_above(live.wrong, live.n, cal.alpha) <= cal.delta
            before = self._live.get(key)
            if live.drift and not (before and before.drift):
                log.warning("gate for step %s: drift -- %d of %d accepted answers labelled since calibration "
                            "version %d are wrong (above alpha=%g with confidence %g); escalating all",
                            key, live.wrong, live.n, cal.version, cal.alpha, 1 - cal.delta)  # fmt: skip
            self._live[key] = live

    # -- the seam -----------------------------------------------------------------------------

    def assess(self, step_key: str, contract_digest: str | None, attempt: Any) -> GateVerdict | None:
        self.refresh()
        cal = self._active.get(step_key)
        if cal is None or attempt.rung not in cal.rungs:
            return None
        if cal.contract_digest is not None and contract_digest != cal.contract_digest:
            return None  # certified for another contract: it says nothing of this one
        if not cal.certified:
            return GateVerdict(False, "gate:not_certified", cal.version)
        live = self._live.get(step_key)
        if live is not None and live.drift:
            return GateVerdict(False, "gate:drift", cal.version, threshold=cal.threshold)
        score = cal.model.score(from_attempt(attempt))
        ok = cal.threshold is not None and score >= cal.threshold
        return GateVerdict(ok, "gate:score", cal.version, score=score, threshold=cal.threshold)

    def predict_skip(self, step_key: str, contract: Any, messages: Any, rung: str) -> SkipVerdict | None:
        """The ladder's skip seam: skip ``rung`` when its certified predictor says it will fail."""
        self.refresh()
        cal = self._skips.get(step_key)
        if cal is None or not cal.certified or cal.threshold is None or rung != cal.rung:
            return None
        p = cal.p_fail(from_request(messages, contract, rung))
        return SkipVerdict(p >= cal.threshold, p, cal.threshold, cal.version)

    def skip_status(self) -> dict[str, dict[str, Any]]:
        """Per step with a skip predictor: version, rung, certified bound, threshold, share skipped."""
        self.refresh()
        return {
            key: {
                "version": c.version,
                "rung": c.rung,
                "certified": c.certified,
                "max_lost": c.max_lost,
                "confidence": 1 - c.delta,
                "threshold": c.threshold,
                "skip_share": c.certification.get("accept_share"),
                "labels_needed": c.certification.get("labels_needed"),
            }  # fmt: skip
            for key, c in sorted(self._skips.items())
        }

    # -- visibility ---------------------------------------------------------------------------

    def status(self) -> dict[str, dict[str, Any]]:
        """Per step: version, certified alpha, threshold, live accepted-wrong estimate, drift."""
        self.refresh()
        out: dict[str, dict[str, Any]] = {}
        for key, cal in sorted(self._active.items()):
            live = self._live.get(key, _Live())
            out[key] = {
                "version": cal.version, "certified": cal.certified, "alpha": cal.alpha,
                "confidence": 1 - cal.delta, "threshold": cal.threshold, "rungs": list(cal.rungs),
                "model": cal.model.kind, "labels_needed": cal.certification.get("labels_needed"),
                "live_labels": live.n, "live_wrong": live.wrong,
                "live_accepted_wrong": (live.wrong / live.n) if live.n else None, "drift": live.drift,
            }  # fmt: skip
        return out
