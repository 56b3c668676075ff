"""What an example is found by: the text a step is searched on, and the digest of its input.

Two pure functions over an OpenAI-shaped conversation, used both when an example is indexed
and when a live step looks for one, so the two sides can never drift apart:

* :func:`step_query` is the text similarity is computed on. Only the *last* user turn and what
  followed it (the tool calls made and the tool outputs seen since) decide what the step is
  doing now: earlier turns are context the step shares with every other step of the same
  conversation and would make all of them look alike. The system message is the step's own
  instructions, identical for every example of a step, so it carries no signal either.
* :func:`input_digest` names the whole normalised input (every non-system message), for the
  exact-match answer memo: the same input, whitespace and tool-call ids aside, gets the same
  digest. Tool-call ids are random per call and never change what the model should answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["TOOL_OUTPUT_CHARS", "input_digest", "message_text", "render_call", "step_query", "tool_calls_of"]

TOOL_OUTPUT_CHARS = 200  # a tool output is truncated to this many characters in the query
_WS = re.compile(r"\s+")
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def _collapse(text: str) -> str:
    return _WS.sub(" ", text).strip()


def message_text(message: dict[str, Any]) -> str:
    """The text of a message's ``content``: a string as it is, a list of OpenAI content parts
    as the concatenation of its text parts (images and other parts carry no text)."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return " ".join(parts)
    return json.dumps(content, ensure_ascii=False, sort_keys=True)


def _arguments(raw: Any) -> Any:
    """Tool-call arguments as a value: OpenAI sends a JSON string; a string that is not JSON
    stays a string (it is still what the model was shown)."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw if raw is not None else {}


def tool_calls_of(message: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(name, arguments)`` of every call an assistant message made: OpenAI ``tool_calls``,
    else calls written in the canonical ``<tool_call>[...]</tool_call>`` text (how the ladder's
    own agent loops may keep them)."""
    calls: list[tuple[str, Any]] = []
    for tc in message.get("tool_calls") or []:
        if not isinstance(tc, dict):
            continue
        inner = tc.get("function")
        fn: dict[str, Any] = inner if isinstance(inner, dict) else tc
        calls.append((str(fn.get("name", "")), _arguments(fn.get("arguments"))))
    if calls or message.get("role") != "assistant":
        return calls
    for block in _TOOL_CALL_BLOCK.findall(message_text(message)):
        try:
            parsed = json.loads(block)
        except ValueError:
            continue
        for c in parsed if isinstance(parsed, list) else [parsed]:
            if isinstance(c, dict) and "name" in c:
                calls.append((str(c["name"]), _arguments(c.get("arguments"))))
    return calls


def render_call(name: str, arguments: Any) -> str:
    """``name(k=v, ...)``: strings bare, everything else as JSON, keys in their given order."""
    if isinstance(arguments, dict):
        args = ", ".join(
            f"{k}={v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
            for k, v in arguments.items()
        )
    elif arguments in (None, "", {}):
        args = ""
    else:
        args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return f"{name}({args})"


def _non_system(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("role") not in ("system", "developer")]


def step_query(messages: Sequence[dict[str, Any]]) -> str:
    """The text a step is searched on: the last user message, then each later tool call as
    ``name(k=v, ...)`` and each later tool output cut to :data:`TOOL_OUTPUT_CHARS` characters,
    whitespace collapsed. With no user message at all, the whole non-system conversation."""
    rest = _non_system(messages)
    last_user = max((i for i, m in enumerate(rest) if m.get("role") == "user"), default=0)
    parts: list[str] = []
    for m in rest[last_user:]:
        role = m.get("role")
        if role == "user":
            parts.append(message_text(m))
        elif role == "assistant":
            parts.extend(render_call(name, args) for name, args in tool_calls_of(m))
        elif role in ("tool", "function"):
            parts.append(_collapse(message_text(m))[:TOOL_OUTPUT_CHARS])
    return _collapse(" ".join(p for p in parts if p))


def input_digest(messages: Sequence[dict[str, Any]]) -> str:
    """sha256 (32 hex characters) of the canonical JSON of every non-system message: role,
    content with whitespace collapsed, and tool calls as ``(name, arguments)`` with sorted keys.
    Tool-call ids and every other field are left out, so only what the model reads counts."""
    canon = []
    for m in _non_system(messages):
        calls = tool_calls_of(m) if m.get("tool_calls") else []
        canon.append(
            [
                str(m.get("role", "")),
                _collapse(message_text(m)),
                [[name, json.dumps(args, sort_keys=True, ensure_ascii=False)] for name, args in calls],
            ]
        )
    blob = json.dumps(canon, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]
