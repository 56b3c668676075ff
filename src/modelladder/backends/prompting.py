"""Turning chat messages (+ a contract's instructions) into the prompt text a local model reads.

Two formats: the model's own chat template from its GGUF metadata (instruction-tuned
models such as SmolLM2), and a plain transcript for base models without one (Gemma 3
270M). The contract's instructions go first in the system text so that steps sharing a
contract share a long prompt prefix, which the backend reuses from its KV cache.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelladder.contracts.base import Contract

__all__ = ["prepare_messages", "render_transcript"]


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # OpenAI content parts: keep the text parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    text = content or ""
    calls = message.get("tool_calls")
    if calls:  # an assistant turn that called tools: show it in the trained tool-call format
        rendered = [
            {"name": c["function"]["name"], "arguments": _json_or_str(c["function"].get("arguments", "{}"))}
            for c in calls
        ]
        text = (text + "\n" if text else "") + "<tool_call>" + json.dumps(rendered) + "</tool_call>"
    return text


def _json_or_str(s: Any) -> Any:
    if isinstance(s, str):
        try:
            return json.loads(s)
        except ValueError:
            return s
    return s


def prepare_messages(messages: list[dict[str, Any]], contract: Contract | None) -> list[dict[str, str]]:
    """Plain ``{"role", "content"}`` messages with the contract's instructions merged into
    the (first) system message and its instructions for this hop appended to the last
    message. Tool results become user-visible ``tool`` turns."""
    out: list[dict[str, str]] = []
    instructions = contract.instructions_for(messages) if contract is not None else ""
    rest = list(messages)
    system_parts = [instructions] if instructions else []
    while rest and rest[0].get("role") in ("system", "developer"):
        system_parts.append(_content(rest.pop(0)))
    if system_parts:
        out.append({"role": "system", "content": "\n\n".join(p for p in system_parts if p)})
    for m in rest:
        role = m.get("role", "user")
        if role == "developer":
            role = "system"
        out.append({"role": role, "content": _content(m)})
    turn = contract.turn_instructions(messages) if contract is not None else ""
    if turn and out:  # after the conversation, inside its last turn: any chat template takes it
        out[-1] = {"role": out[-1]["role"], "content": f"{out[-1]['content']}\n\n{turn}"}
    return out


def render_transcript(messages: list[dict[str, str]]) -> tuple[str, list[str]]:
    """A plain prompt for base models: system text, then ``User:``/``Assistant:`` turns.
    Returns the prompt and the stop strings that end the assistant's turn."""
    parts: list[str] = []
    for m in messages:
        if m["role"] == "system":
            parts.append(m["content"].strip() + "\n")
        elif m["role"] == "assistant":
            parts.append(f"Assistant: {m['content'].strip()}")
        elif m["role"] == "tool":
            parts.append(f"Tool result: {m['content'].strip()}")
        else:
            parts.append(f"User: {m['content'].strip()}")
    parts.append("Assistant:")
    return "\n".join(parts), ["\nUser:", "\nAssistant:"]
