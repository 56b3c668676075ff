"""What the trace store hands back: plain frozen dataclasses, detached from the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from modelladder.contracts.base import Verdict

if TYPE_CHECKING:  # not at runtime: modelladder.ladder may import the trace store itself
    from modelladder.ladder.outcome import Confidence

__all__ = ["AttemptRecord", "RunRecord", "RunSummary"]


@dataclass(frozen=True)
class AttemptRecord:
    """One recorded attempt. ``verdict_ok`` is ``None`` when the attempt never got a verdict
    (e.g. the backend raised); the confidence fields are ``None`` when none was measured."""

    index: int
    rung: str
    placement: str
    text: str
    value: Any
    verdict_ok: bool | None
    verdict_reason: str | None
    verdict_detail: str | None
    mean_logprob: float | None
    min_logprob: float | None
    n_value_tokens: int | None
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int
    latency_s: float
    cost_usd: float
    finish_reason: str | None
    error: str | None
    error_detail: str | None
    escalation_reason: str | None
    accepted: bool
    signals: dict[str, float] = field(default_factory=dict)  # extra gate signals (Confidence.signals)
    decision: str | None = None  # tool steps: "call" | "answer" | "decline" (what the model chose)
    # What the edge rung was shown instead of the step as sent (ladder.shaping.RungView.applied)
    shaping: dict[str, Any] | None = None

    @property
    def verdict(self) -> Verdict | None:
        if self.verdict_ok is None:
            return None
        return Verdict(self.verdict_ok, self.verdict_reason, self.verdict_detail or "", self.value)

    @property
    def confidence(self) -> Confidence | None:
        from modelladder.ladder.outcome import Confidence

        if self.n_value_tokens is None:
            return None
        return Confidence(self.mean_logprob, self.min_logprob, self.n_value_tokens, **self.signals)


@dataclass(frozen=True)
class RunSummary:
    """One row of :meth:`TraceStore.list_runs`. ``rung``/``placement`` are the accepting rung's
    (``None`` for unresolved runs); ``feedback_success`` is ``None`` until feedback is given."""

    run_id: str
    created_at: datetime
    step: str
    outcome: str
    reason: str | None
    rung: str | None
    placement: str | None
    n_attempts: int
    latency_s: float
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int
    tags: dict[str, str]
    feedback_success: bool | None

    @property
    def resolved(self) -> bool:
        return self.outcome == "resolved"


@dataclass(frozen=True)
class RunRecord(RunSummary):
    """A full run from :meth:`TraceStore.get_run`: input messages, the accepted text and value
    (``None`` for unresolved runs), feedback and every attempt in order."""

    contract_digest: str | None
    messages: list[dict[str, Any]]
    text: str | None
    value: Any
    feedback_note: str | None
    feedback_at: datetime | None
    attempts: list[AttemptRecord] = field(default_factory=list)
    contract: dict[str, Any] | None = None  # {"kind", "spec"}: rebuild with contracts.contract_from_spec
    step_key: str | None = None  # what learning keys on: the step name, else "contract:<digest>"
    episode_id: str | None = None
    config_digest: str | None = None
    gate_version: int | None = None  # the calibration that decided this run (None: the policy's thresholds)

    @property
    def accepted(self) -> AttemptRecord | None:
        return next((a for a in reversed(self.attempts) if a.accepted), None)
