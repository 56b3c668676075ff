"""The ``reference`` rung: an oracle that answers with the benchmark's own accepted answer.

Why it exists: the economics of a ladder (how much work stays at the edge, what escalation
costs) need a top rung. When no frontier endpoint is configured, this stands in for one, so
a benchmark can be run offline: it answers every escalated item correctly (as far as the
benchmark's answer key allows) at the latency and list price written in the fleet file.

It is *not* a model. Everything it produces is labelled ``reference`` (the rung name and
backend), and no figure produced with it may be presented as a model's accuracy: a ladder
accuracy measured with it on top is "the edge rungs plus a perfect oracle", an upper bound
on what a real frontier rung would give.

How it answers: items are registered first (:meth:`ReferenceBackend.register`); a call is
looked up by the exact messages it is given plus the names and schemas of the contract's
tools. BFCL holds a few inputs that are identical in two categories with contradicting
answers (e.g. ``live_simple_29-7-2`` and ``live_irrelevance_118-7-8``); for those the
caller says which item is being run with :meth:`ReferenceBackend.focus`. Unknown or
ambiguous input raises :class:`BackendError` (``bad_response``), which the ladder records
as a failed attempt -- never a made-up answer.

Latency and token counts: the reported latency is the rung's ``latency_s`` (no sleeping,
so a benchmark run is not slowed down); token counts are estimated at 4 characters per
token (OpenAI's published rule of thumb for English text) over the text a frontier model
would receive (the contract's instructions with the tool list, then the messages) and the
canonical answer text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from modelladder.backends.base import BackendError, Generation, GenerationParams

if TYPE_CHECKING:
    from modelladder.bench.bfcl.data import BfclItem
    from modelladder.contracts.base import Contract
    from modelladder.fleet_types import Rung

__all__ = [
    "CHARS_PER_TOKEN", "DECLINE_TEXT", "ReferenceBackend", "answer_text", "estimate_tokens",
    "lookup_key", "open_reference_rung",
]  # fmt: skip

CHARS_PER_TOKEN = 4.0
DECLINE_TEXT = "<tool_call>[]</tool_call>"


def estimate_tokens(text: str) -> int:
    """A simple token estimate (4 characters per token, at least 1 for non-empty text)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def _tool_key(tools: Iterable[Mapping[str, Any]]) -> list[Any]:
    """Names and parameter schemas of tools, in the OpenAI envelope or bare."""
    out = []
    for t in tools:
        fn = t.get("function", t)
        out.append([fn.get("name"), fn.get("parameters")])
    return out


def lookup_key(messages: Iterable[Mapping[str, Any]], tools: Iterable[Mapping[str, Any]]) -> str:
    """The key an item is found by: its messages (role and content only) and its tools."""
    msgs = [{"role": m.get("role"), "content": m.get("content")} for m in messages]
    return json.dumps([msgs, _tool_key(tools)], sort_keys=True, ensure_ascii=False)


def answer_text(item: BfclItem) -> str:
    """The canonical tool-call text of the benchmark's accepted answer (a decline for
    irrelevance items)."""
    from modelladder.bench.bfcl.score import reference_answer
    from modelladder.contracts.tools import render_calls

    if item.is_irrelevance:
        return DECLINE_TEXT
    return render_calls(reference_answer(item))


class ReferenceBackend:
    """The oracle backend. ``latency_s`` is what each answer reports as its latency."""

    def __init__(self, name: str = "reference", latency_s: float = 1.0):
        if latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        self.name = name
        self.latency_s = float(latency_s)
        self._by_key: dict[str, dict[str, str]] = {}  # key -> {item id: answer text}
        self._focus: str | None = None

    @classmethod
    def from_rung(cls, rung: Rung) -> ReferenceBackend:
        """A backend for a ``backend = "reference"`` rung (its ``latency_s`` is required)."""
        if rung.latency_s is None:
            raise BackendError(
                "model_missing",
                f"rung {rung.name!r}: a reference rung needs `latency_s` (seconds per answer) in the fleet file",
            )
        return cls(rung.name, rung.latency_s)

    def register(self, items: Iterable[BfclItem]) -> None:
        """Make these items answerable. Registering an item again is harmless."""
        for item in items:
            key = lookup_key(item.messages, item.tools)
            self._by_key.setdefault(key, {})[item.id] = answer_text(item)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_key.values())

    @contextmanager
    def focus(self, item_id: str) -> Iterator[None]:
        """While active, an input shared by several registered items is answered for ``item_id``."""
        previous, self._focus = self._focus, item_id
        try:
            yield
        finally:
            self._focus = previous

    def _answer(self, messages: list[dict[str, Any]], contract: Contract | None) -> str:
        tools = getattr(contract, "tools", None)
        if not tools:
            raise BackendError(
                "bad_response", f"{self.name}: the reference rung only answers tool-call steps"
            )
        found = self._by_key.get(lookup_key(messages, tools))
        if not found:
            raise BackendError(
                "bad_response",
                f"{self.name}: no registered benchmark item has these messages and tools "
                "(register the items before the run)",
            )
        if len(found) == 1:
            return next(iter(found.values()))
        if self._focus in found:
            return found[self._focus]
        answers = set(found.values())
        if len(answers) == 1:
            return answers.pop()
        raise BackendError(
            "bad_response",
            f"{self.name}: items {sorted(found)} share this input with different answers; "
            "run it inside ReferenceBackend.focus(item_id)",
        )

    def generate(
        self, messages: list[dict[str, Any]], contract: Contract | None, params: GenerationParams
    ) -> Generation:
        """The accepted answer as canonical text, with the configured latency and estimated tokens."""
        text = self._answer(messages, contract)
        instructions = contract.instructions() if contract is not None else ""
        prompt = instructions + "".join(str(m.get("content") or "") for m in messages)
        return Generation(
            text=text,
            prompt_tokens=estimate_tokens(prompt),
            completion_tokens=estimate_tokens(text),
            latency_s=self.latency_s,
            finish_reason="stop",
            raw={"reference": True},
        )


def open_reference_rung(rung: Rung) -> ReferenceBackend:
    """The registry's factory for ``backend = "reference"`` (see :mod:`modelladder.backends.registry`).

    Outside ``modelladder bench`` there are no registered items to answer from, so opening a
    reference rung there is refused with a message that says so; the bench builds its
    :class:`ReferenceBackend` itself and registers the items it runs.
    """
    raise BackendError(
        "model_missing",
        f"rung {rung.name!r} is a benchmark `reference` rung: it only exists inside `modelladder bench`",
    )
