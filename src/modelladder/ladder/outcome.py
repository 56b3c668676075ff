"""What a step run produced: every attempt, and an explicit outcome.

A :class:`Resolved` result carries a value that passed the contract, its checks and the
confidence gate. An :class:`Unresolved` result carries every attempt and *no* value:
reading ``.value`` raises, so unvalidated output can never be passed off as good.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelladder.contracts.base import Verdict

__all__ = [
    "Attempt",
    "Confidence",
    "Resolved",
    "SKIPPED",
    "SKIP_REASON",
    "StepResult",
    "Unresolved",
    "UnresolvedError",
]

#: The ``error`` of an attempt the ex-ante skip predictor did not run (no backend call, no
#: cost): recorded so the trace says the edge was passed over, and why.
SKIPPED = "skipped"
SKIP_REASON = "skip:predicted_fail"


class UnresolvedError(RuntimeError):
    """Raised when code reads the value of a step that no rung could satisfy."""


def _low_quantile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile of already sorted values, linearly interpolated (numpy's default)."""
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class Confidence:
    """Confidence signals over the value tokens (tokens where the model had a real choice).

    Beside the mean and minimum, the low quantiles (``p10``/``p25``) and the log-probability
    of the first free choice are kept for the learned gate: the mean is length-biased and the
    minimum is one token's noise, while a low quantile sees "a few weak tokens"
    (arXiv 2404.10136). ``None`` on records made before they were measured.
    """

    mean_logprob: float | None
    min_logprob: float | None
    n_value_tokens: int
    p10_logprob: float | None = None
    p25_logprob: float | None = None
    first_logprob: float | None = None
    # the call-or-decline (or call-or-answer) choice: the first real choice that is not layout.
    # A decline has no value token, so this is the only thing the gate can see of it.
    decision_logprob: float | None = None
    # where in the turn the attempt was made (tool steps): 1.0 right after the user's message,
    # and how many tool results came since it (not confidence, but signals the gate learns from)
    turn_start: float | None = None
    tool_results: float | None = None

    @classmethod
    def from_logprobs(
        cls, logprobs: list[float], free: list[bool], decision_logprob: float | None = None
    ) -> Confidence:
        values = [lp for lp, f in zip(logprobs, free, strict=False) if f] if free else list(logprobs)
        if not values:
            return cls(None, None, 0, decision_logprob=decision_logprob)
        ordered = sorted(values)
        return cls(
            sum(values) / len(values),
            ordered[0],
            len(values),
            p10_logprob=_low_quantile(ordered, 0.10),
            p25_logprob=_low_quantile(ordered, 0.25),
            first_logprob=values[0],
            decision_logprob=decision_logprob,
        )

    def signals(self) -> dict[str, float]:
        """The extra signals as stored beside the mean and minimum (only those measured)."""
        extra = {"p10_logprob": self.p10_logprob, "p25_logprob": self.p25_logprob,
                 "first_logprob": self.first_logprob, "decision_logprob": self.decision_logprob,
                 "turn_start": self.turn_start, "tool_results": self.tool_results}  # fmt: skip
        return {k: v for k, v in extra.items() if v is not None}


@dataclass
class Attempt:
    """One try of one rung. ``escalation_reason`` is set when the ladder moved past it."""

    index: int
    rung: str
    placement: str
    text: str = ""
    verdict: Verdict | None = None
    confidence: Confidence | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    finish_reason: str | None = None
    error: str | None = None  # backend error code, when the backend raised
    error_detail: str = ""
    retry_after_s: float | None = None  # the endpoint's Retry-After, when it sent one
    escalation_reason: str | None = None
    accepted: bool = False
    # What the model chose on a tool step ("call" | "answer" | "decline"), valid or not: the
    # decision a gate on calling can learn from. None for steps without that choice.
    decision: str | None = None
    repeated_call: bool = False  # the loop guard: it repeats a call the conversation answered
    forced_answer: bool = False  # the loop guard's last-rung retry, with calls ruled out
    # What a shaper changed for this rung (examples shown, tools offered, compaction), or None
    shaping: dict[str, Any] | None = None

    @property
    def value(self) -> Any:
        return self.verdict.value if self.verdict is not None else None


@dataclass
class StepResult:
    run_id: str
    step: str
    contract_digest: str | None
    messages: list[dict[str, Any]]
    attempts: list[Attempt] = field(default_factory=list)
    latency_s: float = 0.0
    tags: dict[str, str] = field(default_factory=dict)
    contract: dict[str, Any] | None = None  # {"kind", "spec"} of the step's contract
    # What learning keys on (the step name, else "contract:<digest>"), the agent conversation
    # this step belongs to, and a digest of the configuration that decided it (fleet, policy,
    # gate version), so every decision can be traced back to what made it.
    step_key: str | None = None
    episode_id: str | None = None
    config_digest: str | None = None
    gate_version: int | None = None

    outcome: str = field(default="", init=False)

    @property
    def cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.attempts)

    @property
    def prompt_tokens(self) -> int:
        return sum(a.prompt_tokens for a in self.attempts)

    @property
    def completion_tokens(self) -> int:
        return sum(a.completion_tokens for a in self.attempts)

    @property
    def escalations(self) -> list[str]:
        return [a.escalation_reason for a in self.attempts if a.escalation_reason]


@dataclass
class Resolved(StepResult):
    """The accepted attempt is the last one."""

    outcome: str = field(default="resolved", init=False)

    @property
    def accepted(self) -> Attempt:
        return self.attempts[-1]

    @property
    def value(self) -> Any:
        return self.accepted.value

    @property
    def text(self) -> str:
        return self.accepted.text

    @property
    def rung(self) -> str:
        return self.accepted.rung

    @property
    def placement(self) -> str:
        return self.accepted.placement


@dataclass
class Unresolved(StepResult):
    """No rung satisfied the contract within the policy. ``reason`` says why the ladder stopped."""

    reason: str = ""
    outcome: str = field(default="unresolved", init=False)

    @property
    def value(self) -> Any:
        raise UnresolvedError(
            f"step {self.step!r} is unresolved ({self.reason}); "
            f"attempts: {', '.join(f'{a.rung}:{a.escalation_reason}' for a in self.attempts) or 'none'}"
        )

    @property
    def rung(self) -> None:
        return None

    @property
    def placement(self) -> None:
        return None
