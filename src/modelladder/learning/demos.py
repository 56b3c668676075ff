"""Retrieved examples as demonstrations a small model can copy: prior turns, not prose.

A first probe (issue 18) pasted three examples of the right next call into the system text:
SmolLM2-135M's tool-name accuracy moved from 17 % to 20 %, exact calls stayed at 0, and the
per-step system text broke the shared KV-cache prefix. So here an example is shown as what
it was: the user turn it answered (with the calls already made in that turn and their
outputs, shortened) and the verified answer as the assistant's own turn, in the OpenAI
message shape every backend already renders (local backends in their trained tool-call
format). Where they go is :class:`~modelladder.learning.edge_shaper.EdgeShaper`'s rule
(after the system text and earlier turns, just before the current request), nearest last.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["DEMO_OUTPUT_CHARS", "answer_message", "demo_messages", "last_turn"]

DEMO_OUTPUT_CHARS = 200


def last_turn(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The non-system messages from the last user message on (the whole list if none)."""
    convo = [m for m in messages if m.get("role") not in ("system", "developer")]
    starts = [i for i, m in enumerate(convo) if m.get("role") == "user"]
    return list(convo[starts[-1] :] if starts else convo)


def answer_message(value: Any, text: str, tag: str) -> dict[str, Any]:
    """The verified answer as an assistant turn: calls as ``tool_calls``, anything else
    (a decline, a text or JSON answer) as the answer's own text."""
    if isinstance(value, list) and value and all(isinstance(c, dict) and "name" in c for c in value):
        return {"role": "assistant", "content": "", "tool_calls": [
            {"id": f"{tag}_{i}", "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments") or {})}}
            for i, c in enumerate(value)]}  # fmt: skip
    return {"role": "assistant", "content": text}


def _shortened(m: dict[str, Any]) -> dict[str, Any]:
    if m.get("role") != "tool":
        return dict(m)
    c = str(m.get("content") or "")
    if len(c) <= DEMO_OUTPUT_CHARS:
        return dict(m)
    return {**m, "content": c[:DEMO_OUTPUT_CHARS] + " ..."}


def demo_messages(examples: Sequence[tuple[str, Sequence[dict[str, Any]], Any, str]]) -> list[dict[str, Any]]:
    """Messages for ``(id, messages, value, text)`` examples, in the order given (the caller
    puts the nearest last). Tool-call ids are renamed per example so none collides."""
    out: list[dict[str, Any]] = []
    for n, (_, msgs, value, text) in enumerate(examples):
        tag = f"demo{n}"
        renames: dict[str, str] = {}
        for m in last_turn(msgs):
            m = _shortened(m)
            if m.get("tool_calls"):
                calls = []
                for j, c in enumerate(m["tool_calls"]):
                    new = f"{tag}_h{len(renames)}_{j}"
                    renames[str(c.get("id"))] = new
                    calls.append({**c, "id": new})
                m["tool_calls"] = calls
            if m.get("role") == "tool" and "tool_call_id" in m:
                m["tool_call_id"] = renames.get(str(m["tool_call_id"]), m["tool_call_id"])
            out.append(m)
        out.append(answer_message(value, text, tag))
    return out
