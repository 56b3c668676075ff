"""What a step run produced: every attempt, and an explicit outcome.

A :class:`Resolved` result carries a value that passed the contract, its checks and the
confidence gate. An :class:`Unresolved` result carries every attempt and *no* value:
reading ``.value`` raises, so unvalidated output can never be passed off as good.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelladder.contracts.base import Verdict


class UnresolvedError(RuntimeError):
    """Raised when code reads the value of a step that no rung could satisfy."""


@dataclass(frozen=True)
class Confidence:
    """Confidence signals over the value tokens (tokens where the model had a real choice)."""

    mean_logprob: float | None
    min_logprob: float | None
    n_value_tokens: int

    @classmethod
    def from_logprobs(cls, logprobs: list[float], free: list[bool]) -> Confidence:
        values = [lp for lp, f in zip(logprobs, free, strict=False) if f] if free else list(logprobs)
        if not values:
            return cls(None, None, 0)
        return cls(sum(values) / len(values), min(values), len(values))


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
    escalation_reason: str | None = None
    accepted: bool = False
    # What the model chose on a tool step ("call" | "answer" | "decline"), valid or not: the
    # decision a gate on calling can learn from. None for steps without that choice.
    decision: str | None = None
    repeated_call: bool = False  # the loop guard: it repeats a call the conversation answered
    forced_answer: bool = False  # the loop guard's last-rung retry, with calls ruled out

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
