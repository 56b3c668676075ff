"""The contract abstraction: what a step's output must satisfy.

A contract has two independent jobs. It *compiles* to an llguidance grammar that a
local decoder enforces token by token, and it *validates* a finished output text on
its own. The two are deliberately separate: validation never trusts the decoder, so a
grammar bug (or a remote endpoint that ignores ``response_format``) shows up as a
failed :class:`Verdict`, never as bad output passed on as good.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Check", "CheckFn", "Contract", "ContractError", "Verdict", "as_check"]


class ContractError(ValueError):
    """A contract was declared wrongly (e.g. a malformed JSON Schema). Raised at declaration time."""


@dataclass(frozen=True)
class Verdict:
    """The result of validating one output against a contract.

    ``reason`` is a short machine-readable code (``None`` when ``ok``); ``detail`` is for humans.
    Reason codes used across contracts: ``empty_output``, ``parse_error``, ``schema_violation``,
    ``unknown_tool``, ``too_many_calls``, ``no_call_not_allowed``, ``not_a_choice``,
    ``regex_mismatch``, ``check_failed:<check name>``.
    """

    ok: bool
    reason: str | None = None
    detail: str = ""
    value: Any = None

    @classmethod
    def passed(cls, value: Any) -> Verdict:
        return cls(ok=True, value=value)

    @classmethod
    def failed(cls, reason: str, detail: str = "", value: Any = None) -> Verdict:
        return cls(ok=False, reason=reason, detail=detail, value=value)


def canonical_json(value: Any) -> str:
    """One spelling per JSON value: keys sorted, integral floats as integers, strings as given."""

    def norm(v: Any) -> Any:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [norm(x) for x in v]
        return v

    return json.dumps(norm(value), sort_keys=True, ensure_ascii=False, default=str)


# An extra check runs after the structural validation passed. It gets the parsed value and
# the step's input messages and returns None (pass) or a failure detail string.
CheckFn = Callable[[Any, Sequence[dict[str, Any]]], "str | None"]


@dataclass(frozen=True)
class Check:
    """A named post-validation check, e.g. "every argument value is grounded in the user text"."""

    name: str
    fn: CheckFn

    def __call__(self, value: Any, messages: Sequence[dict[str, Any]]) -> str | None:
        return self.fn(value, messages)


def as_check(c: Check | CheckFn) -> Check:
    if isinstance(c, Check):
        return c
    return Check(name=getattr(c, "__name__", "check"), fn=c)


@dataclass(frozen=True)
class Contract(ABC):
    """Base class of every contract kind.

    Subclasses implement the structural part (``grammar``, ``parse``, ``instructions``,
    ``openai_request``); the shared :meth:`validate` runs the structural parse and then the
    extra checks, so every kind gets checks the same way.
    """

    checks: tuple[Check, ...] = field(default=(), kw_only=True)

    kind: str = field(default="", init=False)

    @abstractmethod
    def grammar(self) -> str:
        """The llguidance grammar (the string accepted by ``llguidance.LLMatcher``)."""

    def grounded_grammar(self, text: str) -> str:
        """The grammar with free-text string values narrowed to spans of ``text`` (a rung's
        ``ground_strings`` option, see :mod:`modelladder.contracts.grounding`); kinds without
        free-text strings return :meth:`grammar` unchanged."""
        return self.grammar()

    @abstractmethod
    def parse(self, text: str) -> Verdict:
        """Structural validation of a finished output text, independent of any decoder."""

    @abstractmethod
    def instructions(self) -> str:
        """Text for the system prompt of a local model telling it what to produce."""

    def instructions_for(self, messages: Sequence[dict[str, Any]]) -> str:
        """The instructions for this conversation (default :meth:`instructions`); a contract
        whose right move depends on the turn (call first, answer after the results) overrides it."""
        return self.instructions()

    def turn_instructions(self, messages: Sequence[dict[str, Any]]) -> str:
        """Instructions for this hop only, placed after the conversation (default none).
        Anything that changes from hop to hop goes here rather than into the system prompt,
        so every hop of a conversation shares the prompt prefix of the hop before it (the
        local backends restore that prefix from their prompt cache instead of evaluating it)."""
        return ""

    @abstractmethod
    def openai_request(self) -> dict[str, Any]:
        """Extra chat-completions request fields (``response_format`` or ``tools``...)."""

    def from_openai_message(self, message: dict[str, Any]) -> str:
        """Turn an OpenAI assistant message into the canonical output text this contract parses."""
        return message.get("content") or ""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """A JSON-serialisable description; its digest identifies the contract in traces."""

    def equivalent(self, a: Any, b: Any) -> bool:
        """Whether two parsed values are the same answer under this contract (teacher labels:
        a larger rung agreeing with a smaller one). Default: equal canonical JSON (keys sorted),
        which is "the same label" for a choice and "equal JSON" for a schema."""
        return canonical_json(a) == canonical_json(b)

    def digest(self) -> str:
        blob = json.dumps(
            {"kind": self.kind, "spec": self.spec(), "checks": [c.name for c in self.checks]},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def validate(self, text: str, messages: Sequence[dict[str, Any]] = ()) -> Verdict:
        if not text or not text.strip():
            return Verdict.failed("empty_output", "the output is empty")
        verdict = self.parse(text)
        if not verdict.ok:
            return verdict
        for check in self.checks:
            try:
                problem = check(verdict.value, messages)
            except Exception as exc:  # a crashing check is a failed check, not a crashed step
                problem = f"check raised {type(exc).__name__}: {exc}"
            if problem:
                return Verdict.failed(f"check_failed:{check.name}", problem, verdict.value)
        return verdict
