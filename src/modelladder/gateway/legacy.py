"""OpenAI's legacy function calling (``functions``, ``function_call``, ``role: "function"``),
translated to ``tools`` on the way in and back to ``function_call`` on the way out.

Why translate at the edge: the contracts, the loop guard, the prompts and the trace store
know one form (``tools``/``tool_choice``, assistant ``tool_calls``, ``role: "tool"``
results), and the legacy form says nothing that form cannot, so a legacy request becomes a
modern one before :func:`modelladder.gateway.translate.plan` derives its contract, and
only the response is reshaped: ``message.function_call`` and ``finish_reason:
"function_call"``, as OpenAI answers such a request.

A legacy response holds one call, so ``functions`` run with ``parallel_tool_calls=False``:
the grammar of a local rung then decodes exactly one call, and a remote rung is asked for
one. Should a rung still return several (a remote one ignoring the flag), the first is
returned and the others are dropped (:func:`legacy_message`).

Mixing the two forms in one request (``functions`` with ``tools`` or ``tool_choice``,
``function_call`` with ``tools`` or ``tool_choice``, ``functions`` with
``parallel_tool_calls=true``) is a 400 naming the fields: which one should win is a guess,
and the answer's shape depends on it. Pure functions; no model, no I/O.
"""

from __future__ import annotations

from typing import Any

from modelladder.gateway.errors import APIError
from modelladder.gateway.schemas import ChatCompletionRequest, NamedFunction, NamedToolChoice, ToolDef

__all__ = ["is_legacy", "legacy_message", "modern_messages", "modernize", "rename_error"]

_PARAMS = {"tools": "functions", "tool_choice": "function_call"}  # modern param -> legacy name


def is_legacy(req: ChatCompletionRequest) -> bool:
    """Whether the request uses ``functions`` or ``function_call`` (and gets the legacy shape)."""
    return req.functions is not None or req.function_call is not None


def _check_not_mixed(req: ChatCompletionRequest) -> None:
    legacy = [f for f in ("functions", "function_call") if getattr(req, f) is not None]
    modern = [f for f in ("tools", "tool_choice") if getattr(req, f) is not None]
    if req.parallel_tool_calls and req.functions is not None:
        modern.append("parallel_tool_calls")
    if not modern:
        return
    both = " and ".join(f"`{f}`" for f in legacy + modern)
    raise APIError(
        400,
        f"The request sets {both}: use either the legacy `functions`/`function_call` pair or "
        "`tools`/`tool_choice`, not both. To move on, send each function as "
        '`tools=[{"type": "function", "function": {...}}]` and `function_call` as `tool_choice` '
        '("none", "auto", or {"type": "function", "function": {"name": ...}}). Legacy `functions` '
        "answer with a single `function_call`, so `parallel_tool_calls` cannot be true with them.",
        "conflicting_parameters",
        param=legacy[0],
    )


def modernize(req: ChatCompletionRequest) -> ChatCompletionRequest:
    """The request with ``functions``/``function_call`` moved to ``tools``/``tool_choice``
    (``parallel_tool_calls=False``), or the request itself when it uses neither. A 400 when
    it mixes the two forms, or when ``function_call`` names a function it does not define."""
    if not is_legacy(req):
        return req
    _check_not_mixed(req)
    names = [f.name for f in req.functions or []]
    fc = req.function_call
    choice: str | NamedToolChoice | None = fc if not isinstance(fc, NamedFunction) else None
    if isinstance(fc, NamedFunction):
        if fc.name not in names:
            why = (
                f"which is not among the functions {names}"
                if names
                else "but the request defines no functions"
            )
            raise APIError(
                400, f"function_call names {fc.name!r}, {why}", "invalid_value", param="function_call"
            )
        choice = NamedToolChoice(type="function", function=NamedFunction(name=fc.name))
    tools = (
        [ToolDef(type="function", function=f) for f in req.functions] if req.functions is not None else None
    )
    return req.model_copy(
        update={"tools": tools, "tool_choice": choice, "parallel_tool_calls": False if tools else None,
                "functions": None, "function_call": None}
    )  # fmt: skip


def rename_error(exc: APIError) -> APIError:
    """An error of the translated request, naming the legacy field the client sent
    (``tools`` -> ``functions``, ``tool_choice`` -> ``function_call``)."""
    head, dot, rest = (exc.param or "").partition(".")
    if head in _PARAMS:
        exc.param = _PARAMS[head] + dot + rest
        if exc.message.startswith(head + " "):  # "tools cannot be compiled: ..."
            exc.message = _PARAMS[head] + exc.message[len(head) :]
    return exc


def modern_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Legacy turns as the ladder reads them: an assistant ``function_call`` becomes a
    one-element ``tool_calls`` with a made-up id (``call_fn<index>``), and a ``role:
    "function"`` result becomes a ``role: "tool"`` message whose ``tool_call_id`` is that id
    when its ``name`` matches (or is missing) -- so the loop guard sees the call as answered
    and a remote rung gets a valid pair. A result that follows no matching call keeps no
    ``tool_call_id`` (local rungs read it as a tool turn). Other messages pass unchanged."""
    out: list[dict[str, Any]] = []
    pending: tuple[str, str] | None = None  # (name, id) of the latest unanswered legacy call
    for i, m in enumerate(messages):
        role, fc = m.get("role"), m.get("function_call")
        if role == "assistant":
            pending = None
            if fc is not None:
                if m.get("tool_calls"):
                    raise APIError(
                        400, f"messages[{i}]: an assistant message has tool_calls or function_call, not both",
                        "invalid_value", param=f"messages[{i}].function_call",
                    )  # fmt: skip
                call_id = f"call_fn{i}"
                call = {"id": call_id, "type": "function",
                        "function": {"name": fc["name"], "arguments": fc["arguments"]}}  # fmt: skip
                m = {**{k: v for k, v in m.items() if k != "function_call"}, "tool_calls": [call]}
                pending = (fc["name"], call_id)
        elif role == "function":
            tool: dict[str, Any] = {"role": "tool", "content": m.get("content") or ""}
            if pending is not None and m.get("name") in (None, pending[0]):
                tool["tool_call_id"] = pending[1]
                pending = None
            m = tool
        out.append(m)
    return out


def legacy_message(message: dict[str, Any], finish: str) -> tuple[dict[str, Any], str]:
    """An assistant message and ``finish_reason`` in the legacy shape: ``tool_calls`` become
    ``function_call`` (``{"name", "arguments"}``) and ``"tool_calls"`` becomes
    ``"function_call"``. The legacy shape holds one call: if a rung returned several
    (``parallel_tool_calls=False`` makes that rare), the first is returned, the rest dropped.
    A text answer is unchanged."""
    calls = message.get("tool_calls")
    if not calls:
        return message, finish
    first = calls[0]["function"]
    out = {k: v for k, v in message.items() if k != "tool_calls"}
    out["function_call"] = {"name": first["name"], "arguments": first["arguments"]}
    return out, "function_call"
