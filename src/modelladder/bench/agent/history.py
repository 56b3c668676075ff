"""Chat messages of an agent transcript: an assistant turn that calls tools, the tool outputs,
and the assistant message that ends a turn.

The end of a turn is written as the contract's own decline (``<tool_call>[]</tool_call>``):
that is exactly the output a step is asked to produce when nothing more should be called, so
the transcript shows the model what a finished turn looks like, and every step of an item
shares the prompt prefix of the one before (the llama.cpp backend reuses it from its KV cache).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from modelladder.bench.agent.execute import CallResult, ToolEnv, parse_call

__all__ = ["END_OF_TURN", "call_messages", "end_of_turn", "gold_arguments"]

END_OF_TURN = "<tool_call>[]</tool_call>"


def gold_arguments(env: ToolEnv, call: str) -> tuple[str, dict[str, Any]]:
    """A gold call string as ``(name, keyword arguments)``: positional arguments (40 of 1,142
    base gold calls) are named after the method's signature, so the model sees JSON calls."""
    parsed = parse_call(call)
    norm = env.normalised(parsed)
    if norm is None:
        return parsed.name, dict(parsed.kwargs)
    name, full = norm
    given = set(parsed.kwargs) | set(list(full)[: len(parsed.args)])
    return name, {k: v for k, v in full.items() if k in given}


def call_messages(
    calls: Sequence[tuple[str, dict[str, Any]]], results: Sequence[CallResult], tag: str
) -> list[dict[str, Any]]:
    """One assistant message with ``tool_calls`` and one ``tool`` message per call."""
    ids = [f"call_{tag}_{i}" for i in range(len(calls))]
    msgs: list[dict[str, Any]] = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
                for i, (n, a) in zip(ids, calls, strict=True)
            ],
        }
    ]
    msgs += [
        {"role": "tool", "tool_call_id": i, "content": r.output} for i, r in zip(ids, results, strict=True)
    ]
    return msgs


def end_of_turn() -> dict[str, Any]:
    return {"role": "assistant", "content": END_OF_TURN}
