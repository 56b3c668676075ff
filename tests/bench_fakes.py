"""Deterministic stand-in backends for the bench tests (no model needed).

A :class:`ScriptedBackend` recognises a registered BFCL item by its messages and tools
(like the reference rung) and answers according to a behaviour chosen per item from a hash
of the id and the backend's name: correct, wrong value, parse error, truncation, backend
error, decline -- each with made-up but deterministic confidence signals.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from modelladder.backends.base import BackendError, Generation, GenerationParams
from modelladder.bench.bfcl.data import BfclItem
from modelladder.bench.bfcl.reference import answer_text, lookup_key
from modelladder.bench.bfcl.score import reference_answer
from modelladder.contracts.tools import render_calls

BEHAVIOURS = (
    "correct",
    "correct",
    "correct",
    "wrong",
    "garbage",
    "truncated",
    "error",
    "decline",
    "correct_unsure",
)


def _h(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:8], "big")


def behaviour_for(name: str, item_id: str) -> str:
    return BEHAVIOURS[_h(name, item_id) % len(BEHAVIOURS)]


def wrong_text(item: BfclItem) -> str:
    """A well-formed answer that fails the AST checker: a call on irrelevance items, else the
    reference with its first argument value changed."""
    if item.is_irrelevance:
        fn = item.tools[0]["function"]["name"]
        return render_calls([{"name": fn, "arguments": {}}])
    calls = json.loads(json.dumps(reference_answer(item)))
    for c in calls:
        for k, v in c["arguments"].items():
            if isinstance(v, bool):
                c["arguments"][k] = not v
            elif isinstance(v, int | float):
                c["arguments"][k] = v + 987
            elif isinstance(v, str):
                c["arguments"][k] = v + "zzz"
            else:
                continue
            return render_calls(calls)
    return render_calls([{"name": "not_a_tool_at_all", "arguments": {}}])


class ScriptedBackend:
    def __init__(
        self,
        name: str,
        items: Sequence[BfclItem],
        latency_s: float = 0.4,
        behaviours: dict[str, str] | None = None,
    ):
        self.name = name
        self.latency_s = latency_s
        self.calls = 0
        self.seen: list[str] = []
        self._items = {lookup_key(it.messages, it.tools): it for it in items}
        self._forced = dict(behaviours or {})

    def generate(self, messages: list[dict[str, Any]], contract: Any, params: GenerationParams) -> Generation:
        self.calls += 1
        item = self._items[lookup_key(messages, contract.tools)]
        self.seen.append(item.id)
        kind = self._forced.get(item.id) or behaviour_for(self.name, item.id)
        h = _h("conf", self.name, item.id)
        mean = -((h % 1000) / 1000.0) * 1.2  # 0 .. -1.2
        low = mean - ((h >> 10) % 1000) / 1000.0 * 4.0  # a little to 4 below the mean
        if kind == "correct_unsure":
            mean, low = mean - 1.5, low - 3.0
        finish = "stop"
        if kind in ("correct", "correct_unsure"):
            text = answer_text(item)
        elif kind == "wrong":
            text = wrong_text(item)
        elif kind == "garbage":
            text = "I think you should call <tool_call>[{broken"
        elif kind == "truncated":
            text, finish = answer_text(item)[:-5], "length"
        elif kind == "decline":
            text = "<tool_call>[]</tool_call>"
        elif kind == "error":
            raise BackendError("timeout", f"{self.name}: scripted timeout")
        else:  # pragma: no cover
            raise AssertionError(kind)
        logprobs = [0.0, mean * 2 - low, low, 0.0]  # mean over the free ones is `mean`, min is `low`
        free = [False, True, True, False]
        if kind == "decline":
            logprobs, free = [0.0, -0.01], [False, False]  # no value tokens in a decline
        return Generation(
            text=text,
            prompt_tokens=300,
            completion_tokens=40,
            latency_s=self.latency_s,
            finish_reason=finish,
            token_logprobs=logprobs,
            free=free,
        )


class ExplodingBackend:
    """Raises something no backend should: the ladder must still record a failed attempt."""

    name = "exploding"

    def generate(self, messages: Any, contract: Any, params: Any) -> Generation:
        raise ZeroDivisionError("scripted crash")
