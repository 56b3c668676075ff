"""The one small abstraction every model sits behind.

A backend turns ``(messages, contract, params)`` into a :class:`Generation`. It does not
decide whether the output is good: the ladder validates every generation with the
contract itself. Backends raise :class:`BackendError` (with a machine-readable ``code``)
for anything that is not a model answer, so the ladder can escalate on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from modelladder.contracts.base import Contract

__all__ = ["Backend", "BackendError", "Generation", "GenerationParams"]


class BackendError(RuntimeError):
    """A backend could not produce an answer. ``code``: ``unreachable``, ``timeout``,
    ``model_missing``, ``bad_response`` (malformed, truncated or oversized), ``rate_limited``
    (HTTP 429), ``server_error`` (HTTP 5xx), ``unauthorized``, ``context_overflow``,
    ``internal``, ``llama_crash`` (the installed llama.cpp dies on this CPU: see
    :mod:`modelladder.backends.llamacpp_probe`).

    ``retry_after_s``: how long the endpoint asked us to wait before calling again (its
    ``Retry-After``), when it said; the ladder honours it (see :mod:`modelladder.ladder.cooldown`)."""

    def __init__(self, code: str, message: str, *, retry_after_s: float | None = None):
        super().__init__(message)
        self.code = code
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class GenerationParams:
    """``on_text``: called with each new piece of a free-text output as it is decoded (a
    free-text step, or the text answer of a call-or-answer step), for live streaming.
    Backends that cannot stream ignore it; the finished text is the authority either way."""

    max_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    timeout_s: float | None = None
    on_text: Callable[[str], None] | None = field(default=None, compare=False)
    step_key: str | None = None  # which step this is (a memo keys its answers on it)


def safe_prefix_len(text: str, stops: Sequence[str]) -> int:
    """How much of ``text`` can be shown now: up to the first stop string, and short of a
    tail that might still grow into one (``"...\nUs"`` before ``"\nUser:"``)."""
    cut = min((text.index(s) for s in stops if s and s in text), default=None)
    if cut is not None:
        return cut
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return len(text) - hold


@dataclass
class Generation:
    """What one model call produced.

    ``token_logprobs`` are the log-probabilities of the chosen tokens (for constrained
    local decoding: renormalised over the tokens the contract allowed); ``free`` marks the
    "value tokens" the confidence gate looks at (a real choice of a token that carries a
    letter or digit). Both are empty when the backend gives no log-probabilities.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    finish_reason: str = "stop"  # "stop" | "length"
    token_logprobs: list[float] = field(default_factory=list)
    free: list[bool] = field(default_factory=list)
    cached_prompt_tokens: int = 0
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@runtime_checkable
class Backend(Protocol):
    """A model behind one call. Implementations: ``llamacpp``, ``openai``, ``reference``."""

    name: str

    def generate(
        self, messages: list[dict[str, Any]], contract: Contract | None, params: GenerationParams
    ) -> Generation: ...
