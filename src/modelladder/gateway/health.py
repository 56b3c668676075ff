"""What the gateway says about its own trouble: lost traces and cooled-down rungs.

Why the gateway keeps answering when the trace store cannot write (a full or read-only
disk): the agent in front of it needs its answer now, and a validated answer is as valid
without its trace; refusing every request because of a disk would turn a bookkeeping fault
into an outage. But a lost trace is lost training data and a hole in the audit trail, so it
is never quiet: each one is logged at ERROR with its run id and why, counted in
``modelladder_traces_lost_total`` (by reason), and ``healthz`` reports ``degraded`` with the
count and the last error while the store keeps refusing. The first run recorded again clears
``failing`` (the counter stays). An explicit write the client asked for (``/v1/feedback``) is
refused with 503 instead: there the write *is* the answer.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from modelladder.ladder.cooldown import Cooldowns
from modelladder.ladder.outcome import StepResult

__all__ = ["TraceLosses", "cooling_report", "loss_reason"]

log = logging.getLogger("modelladder.gateway")

LOSS_REASONS = ("disk_full", "read_only", "io_error", "other")


def loss_reason(exc: BaseException) -> str:
    """A bounded label for why a write failed (SQLite's own words, whatever wraps them)."""
    text = str(exc).lower()
    if "full" in text or "no space" in text or "file too large" in text:
        return "disk_full"
    if "readonly" in text or "read-only" in text or "read only" in text:
        return "read_only"
    if "i/o" in text or "disk" in text:
        return "io_error"
    return "other"


class TraceLosses:
    """The ladder's ``on_record`` hook: counts and logs traces the store refused."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total: dict[str, int] = {}
        self.failing = False
        self.last_error = ""
        self.last_lost_at: str | None = None

    def __call__(self, result: StepResult, exc: Exception | None) -> None:
        if exc is None:
            if self.failing:
                with self._lock:
                    self.failing = False
                log.warning("the trace store is recording again (%d traces lost before)", self.lost)
            return
        reason = loss_reason(exc)
        with self._lock:
            self.total[reason] = self.total.get(reason, 0) + 1
            self.failing = True
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            self.last_lost_at = datetime.now(UTC).isoformat(timespec="seconds")
            n = sum(self.total.values())
        log.error("TRACE LOST: run %s (step %s, %s) was answered but not recorded: %s [%s; %d lost so far]",
                  result.run_id, result.step, result.outcome, self.last_error, reason, n)  # fmt: skip

    @property
    def lost(self) -> int:
        with self._lock:
            return sum(self.total.values())

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {"lost": sum(self.total.values()), "failing": self.failing,
                    "last_error": self.last_error or None, "last_lost_at": self.last_lost_at}  # fmt: skip


def cooling_report(cooldowns: Cooldowns) -> dict[str, Any]:
    """Rungs cooling down now: seconds left, the fault that started it, faults in a row."""
    return {
        h.rung: {"for_s": round(h.cooling_s, 3), "reason": h.reason, "failures": h.failures}
        for h in cooldowns.health()
        if h.cooling_s > 0
    }
