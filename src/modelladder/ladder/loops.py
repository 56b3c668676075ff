"""The loop guard: a tool call the conversation has already had answered is a loop.

Why a guard at all, when the call-or-answer grammar already lets a model answer: a small
model that has just read a tool result often calls the same tool again, and an agent
framework dutifully runs it and asks again, until its turn limit. Repeating a call whose
result is already in the conversation (same name, same arguments, and a ``role: tool``
message answering it) can add nothing, so the ladder treats such an output as a failed
attempt (``loop:repeated_call``): the next rung tries, and on the last rung the step is
asked for its answer instead (see :meth:`modelladder.contracts.ToolCalls.answer_only`).

Only calls answered since the latest ``role: user`` message count: a new user turn may ask
for the same call again (the weather "now", or ``cd(folder='temp')`` again after the user had
the agent leave that folder, as BFCL's multi-turn items do), and that is a request, not a loop.

Pure functions of the messages and the parsed calls: no model, no I/O.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["LOOP_REASON", "answered_calls", "repeated_calls"]

LOOP_REASON = "loop:repeated_call"


def _key(name: Any, arguments: Any) -> str:
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):  # malformed: compared verbatim
            arguments = json.loads(arguments) if arguments.strip() else {}
    return json.dumps([name, arguments], sort_keys=True, ensure_ascii=False)


def answered_calls(messages: Sequence[dict[str, Any]]) -> set[str]:
    """Keys of the calls in assistant ``tool_calls`` that a later ``role: tool`` message
    answers (by ``tool_call_id``; a tool message without one answers every call of the
    assistant turn before it, as some clients send them), since the latest user message."""
    pending: dict[str, str] = {}  # tool_call_id -> key
    last_turn: list[str] = []
    answered: set[str] = set()
    for m in messages:
        role = m.get("role")
        if role == "user":  # a new request: what was answered before it is not a loop
            pending, last_turn, answered = {}, [], set()
        elif role == "assistant":
            last_turn = []
            for i, tc in enumerate(m.get("tool_calls") or []):
                fn = (tc or {}).get("function") or {}
                key = _key(fn.get("name"), fn.get("arguments"))
                pending[str((tc or {}).get("id") or f"#{i}")] = key
                last_turn.append(key)
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if call_id is not None and str(call_id) in pending:
                answered.add(pending[str(call_id)])
            elif call_id is None:
                answered.update(last_turn)
    return answered


def repeated_calls(calls: Iterable[dict[str, Any]], messages: Sequence[dict[str, Any]]) -> list[str]:
    """Names of the ``calls`` (``{"name", "arguments"}``) whose result the conversation
    already holds; empty when none repeats."""
    answered = answered_calls(messages)
    if not answered:
        return []
    return [c["name"] for c in calls if _key(c.get("name"), c.get("arguments")) in answered]


def turn_position(messages: Sequence[dict[str, Any]]) -> tuple[bool, int]:
    """Where in the turn a step is: whether the conversation ends with the user's message (a
    turn starts), and how many tool results have come since that message. The gate learns
    from these per step (measured on BFCL multi-turn with SmolLM2: every decline right after
    the user's message was wrong, about half of those after a tool result were right)."""
    results = 0
    for m in reversed(messages):
        role = m.get("role")
        if role == "user":
            break
        if role == "tool":
            results += 1
    return bool(messages) and messages[-1].get("role") == "user", results
