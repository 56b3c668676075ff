"""What the ex-ante skip predictor sees of a request: features of the input alone.

The skip (issue 15, item 8) decides *before* the edge rung runs, so it cannot read
log-probabilities; it reads where the conversation stands and what the step offers. The same
function reads a live request (the prompt and the step's contract as ``{"kind", "spec"}``) and
a stored run (its ``messages`` and ``contract``), so the predictor is fitted on exactly what
it is later applied to.

Measured on BFCL multi-turn with SmolLM2 (``docs/benchmarks_gate.md``): every decline right
after the user's message was wrong, and about half the answers after a tool result were
right, so where the step stands in its turn is the first thing to look at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from modelladder.ladder.loops import turn_position
from modelladder.learning.features import Row

__all__ = ["REQUEST_NUMERIC", "from_request"]

REQUEST_NUMERIC = (
    "turn_start", "log_tool_results", "log_messages", "log_user_turns", "log_last_user_chars",
    "log_tools_offered", "tool_choice_required", "may_answer",
)  # fmt: skip


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def _last_called(messages: Sequence[Mapping[str, Any]]) -> str:
    """The tool of the conversation's latest call ("<none>" before any): what was just done."""
    for m in reversed(messages):
        calls = m.get("tool_calls") if m.get("role") == "assistant" else None
        if calls:
            names = sorted({str(((c or {}).get("function") or {}).get("name")) for c in calls})
            return "+".join(names)
    return "<none>"


def from_request(messages: Sequence[Mapping[str, Any]], contract: Mapping[str, Any] | None, rung: str) -> Row:
    """One request's features, for the predictor of ``rung`` (the edge rung it may skip).

    ``contract``: ``{"kind", "spec"}`` as a trace stores it (``None``: a free-text step)."""
    msgs = [dict(m) for m in messages]
    start, results = turn_position(msgs)
    users = [m for m in msgs if m.get("role") == "user"]
    spec = dict((contract or {}).get("spec") or {})
    tools = spec.get("tools") or []
    choice = spec.get("tool_choice")
    numeric = {
        "turn_start": float(start),
        "log_tool_results": math.log1p(results),
        "log_messages": math.log1p(len(msgs)),
        "log_user_turns": math.log1p(len(users)),
        "log_last_user_chars": math.log1p(len(_text(users[-1].get("content"))) if users else 0),
        "log_tools_offered": math.log1p(len(tools) if isinstance(tools, list) else 0),
        "tool_choice_required": float(choice == "required" or isinstance(choice, Mapping)),
        "may_answer": float(bool(spec.get("answer") or spec.get("allow_no_call"))),
    }
    return Row(numeric, _last_called(msgs), rung)
