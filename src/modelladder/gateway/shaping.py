"""Ladder results -> exact OpenAI response shapes: ``chat.completion`` bodies, the SSE
``chat.completion.chunk`` stream, ``x-modelladder-*`` headers, and error bodies for runs
that no rung could satisfy.

Why most streams happen after the run: the ladder validates a *finished* output and may
escalate; streaming tokens as they come would hand the agent text that is later thrown
away. So a buffered stream is the validated answer cut into chunks, and a failed run still
gets a real status code (422/503) instead of an error in the middle of a 200 stream. The
exception is free text that no later check can reject (``Plan.streams_live``): that goes
out as decoded, through :class:`LiveStream`. A legacy ``functions`` request gets its call
as ``message.function_call`` (``delta.function_call`` when streamed), see
:mod:`modelladder.gateway.legacy`.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

from modelladder.contracts.tools import OPEN, Answer
from modelladder.gateway.errors import APIError
from modelladder.gateway.legacy import legacy_message
from modelladder.gateway.translate import Plan
from modelladder.ladder.outcome import Resolved, Unresolved

__all__ = [
    "completion_body", "completion_id", "headers_for", "message_for", "stream_chunks",
    "unresolved_error", "usage_for",
]  # fmt: skip

_CHUNK_WORDS = re.compile(r"\S+\s*|\s+")


def _header_safe(value: str) -> str:
    return value.encode("ascii", "replace").decode("ascii").replace("\r", " ").replace("\n", " ")[:512]


def headers_for(result: Resolved | Unresolved) -> dict[str, str]:
    reasons = [a.escalation_reason for a in result.attempts if a.escalation_reason]
    out = {
        "x-modelladder-run-id": result.run_id,
        "x-modelladder-attempts": str(len(result.attempts)),
        "x-modelladder-step": _header_safe(result.step),
    }
    if result.rung is not None:
        out["x-modelladder-rung"] = _header_safe(result.rung)
    if reasons:
        out["x-modelladder-escalation-reason"] = _header_safe(",".join(reasons))
    if result.tags.get("ignored"):
        out["x-modelladder-ignored"] = _header_safe(result.tags["ignored"])
    return out


def completion_id(run_id: str) -> str:
    return f"chatcmpl-{run_id}"


def _apply_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    cut = min((text.index(s) for s in stop if s in text), default=None)
    return (text, False) if cut is None else (text[:cut], True)


def message_for(result: Resolved, plan: Plan) -> tuple[dict[str, Any], str]:
    """The assistant message and ``finish_reason`` for an accepted result (in the legacy
    ``function_call`` shape when the request sent ``functions``)."""
    message, finish = _modern_message(result, plan)
    return legacy_message(message, finish) if plan.legacy else (message, finish)


def _modern_message(result: Resolved, plan: Plan) -> tuple[dict[str, Any], str]:
    accepted = result.accepted
    if plan.kind == "tools" and isinstance(result.value, Answer):  # "auto": the model answered
        answer = result.value
        if not answer.free:
            return {
                "role": "assistant",
                "content": json.dumps(answer.value, ensure_ascii=False),
                "refusal": None,
            }, "stop"
        text, stopped = _apply_stop(answer.text, plan.stop)
        finish = "length" if accepted.finish_reason == "length" and not stopped else "stop"
        return {"role": "assistant", "content": text, "refusal": None}, finish
    if plan.kind == "tools":
        calls = result.value or []
        if calls:
            tool_calls = [
                {
                    "id": f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    "function": {
                        "name": c["name"],
                        "arguments": json.dumps(c["arguments"], ensure_ascii=False),
                    },
                }
                for c in calls
            ]
            return {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": tool_calls,
            }, "tool_calls"
        # a decline: a remote model's plain-text reply is the answer; a local decline is empty
        text = "" if OPEN in accepted.text else accepted.text.strip()
        return {"role": "assistant", "content": text, "refusal": None}, "stop"
    if plan.kind == "json":
        return {
            "role": "assistant",
            "content": json.dumps(result.value, ensure_ascii=False),
            "refusal": None,
        }, "stop"
    text, stopped = _apply_stop(accepted.text, plan.stop)
    finish = "length" if accepted.finish_reason == "length" and not stopped else "stop"
    return {"role": "assistant", "content": text, "refusal": None}, finish


def usage_for(result: Resolved | Unresolved) -> dict[str, Any]:
    """Tokens of every attempt: what the request consumed, escalations included, with the
    prompt tokens that were reused from a cache rather than evaluated (OpenAI's
    ``prompt_tokens_details.cached_tokens``)."""
    p, c = result.prompt_tokens, result.completion_tokens
    cached = sum(a.cached_prompt_tokens for a in result.attempts)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": cached}}  # fmt: skip


def completion_body(result: Resolved, plan: Plan) -> dict[str, Any]:
    message, finish = message_for(result, plan)
    return {
        "id": completion_id(result.run_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.rung,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage_for(result),
        "system_fingerprint": None,
    }


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


def stream_chunks(result: Resolved, plan: Plan, words_per_chunk: int = 4) -> Iterator[bytes]:
    """The SSE events of a validated answer, ending with ``data: [DONE]``."""
    message, finish = message_for(result, plan)
    base = {
        "id": completion_id(result.run_id),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": result.rung,
        "system_fingerprint": None,
    }
    usage: dict[str, Any] = {"usage": None} if plan.include_usage else {}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse({**base, "choices": [choice], **usage})

    calls = message.get("tool_calls") is not None or message.get("function_call") is not None
    yield chunk({"role": "assistant", "content": None if calls else ""})
    if message.get("function_call") is not None:  # legacy: name first, then the arguments
        fn = message["function_call"]
        yield chunk({"function_call": {"name": fn["name"], "arguments": ""}})
        yield chunk({"function_call": {"arguments": fn["arguments"]}})
    for i, call in enumerate(message.get("tool_calls") or []):
        fn = call["function"]
        head = {
            "index": i,
            "id": call["id"],
            "type": "function",
            "function": {"name": fn["name"], "arguments": ""},
        }
        yield chunk({"tool_calls": [head]})
        yield chunk({"tool_calls": [{"index": i, "function": {"arguments": fn["arguments"]}}]})
    content = message.get("content") or ""
    if content:
        words = _CHUNK_WORDS.findall(content)
        for k in range(0, len(words), words_per_chunk):
            yield chunk({"content": "".join(words[k : k + words_per_chunk])})
    yield chunk({}, finish)
    if plan.include_usage:
        yield _sse({**base, "choices": [], "usage": usage_for(result)})
    yield b"data: [DONE]\n\n"


class LiveStream:
    """The SSE events of an answer streamed as it is decoded (``Plan.streams_live``).

    Deltas come from the backend, already free of the model's own stop strings; this adds
    the request's ``stop`` strings (text is held back while it may still become one) and,
    when the run ends, whatever of the validated answer was not sent yet.
    """

    def __init__(self, run_id: str, rung: str, plan: Plan):
        self.plan, self.rung, self.sent, self.stopped = plan, rung, "", False
        self.base = {"id": completion_id(run_id), "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": rung, "system_fingerprint": None}  # fmt: skip
        self.decoded = ""

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        usage: dict[str, Any] = {"usage": None} if self.plan.include_usage else {}
        return _sse({**self.base, "choices": [choice], **usage})

    def start(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def _upto(self, text: str) -> bytes:
        from modelladder.backends.base import safe_prefix_len

        cut = safe_prefix_len(text, self.plan.stop)
        self.stopped = any(s in text for s in self.plan.stop)
        new = text[len(self.sent) : cut] if text.startswith(self.sent) else ""
        if not new:
            return b""
        self.sent += new
        return self._chunk({"content": new})

    def delta(self, text: str) -> bytes:
        if self.stopped:
            return b""
        self.decoded += text
        return self._upto(self.decoded.lstrip())

    def finish(self, result: Resolved) -> bytes:
        message, finish = message_for(result, self.plan)
        final = message.get("content") or ""  # validated, and cut at the request's stop strings
        rest = final[len(self.sent) :] if final.startswith(self.sent) else ""
        out = self._chunk({"content": rest}) if rest else b""
        out += self._chunk({}, finish)
        if self.plan.include_usage:
            out += _sse({**self.base, "choices": [], "usage": usage_for(result)})
        return out + b"data: [DONE]\n\n"

    def fail(self, error: APIError) -> bytes:
        return _sse(error.body()) + b"data: [DONE]\n\n"


# -- runs that produced no answer ------------------------------------------------------------


def unresolved_error(result: Unresolved, cooling_s: float | None = None) -> APIError:
    """422 when some rung answered and failed the contract (or the confidence gate); 400
    when the prompt fits no rung; 429 when no rung answered and one was rate-limited; 503
    when no rung answered at all (unreachable, timed out, cooling down). ``cooling_s``: how
    soon the first cooled-down rung is back. A 429 or 503 carries ``Retry-After`` when the
    upstream's, or the cool-down's, is known."""
    attempts = [
        {
            "rung": a.rung,
            "reason": a.escalation_reason,
            "detail": (a.error_detail or (a.verdict.detail if a.verdict is not None else ""))[:500],
        }
        for a in result.attempts
    ]
    extra = {"modelladder": {"run_id": result.run_id, "stopped": result.reason, "attempts": attempts,
                             "usage": usage_for(result)}}  # fmt: skip
    headers = headers_for(result)
    summary = "; ".join(
        f"{a['rung']}: {a['reason']}" + (f" ({a['detail']})" if a["detail"] else "") for a in attempts
    )
    if any(a.error is None for a in result.attempts):
        return APIError(
            422,
            f"no rung satisfied the contract ({result.reason}): {summary}",
            code="contract_unsatisfied",
            headers=headers,
            extra=extra,
        )
    if result.attempts and all(a.error == "context_overflow" for a in result.attempts):
        return APIError(
            400, f"the messages do not fit the context of any rung: {summary}", code="context_length_exceeded",
            param="messages", headers=headers, extra=extra,
        )  # fmt: skip
    waits = [a.retry_after_s for a in result.attempts if a.retry_after_s is not None]
    if cooling_s is not None:
        waits.append(cooling_s)
    if waits:
        headers["retry-after"] = str(max(1, math.ceil(min(waits))))
    why = summary or f"the ladder stopped before any attempt ({result.reason})"
    if any(a.error == "rate_limited" for a in result.attempts):
        return APIError(
            429, f"the upstream rate-limited every rung that could answer: {why}", code="upstream_rate_limited",
            headers=headers, extra=extra,
        )  # fmt: skip
    return APIError(
        503, f"no rung is reachable: {why}", code="no_rung_available", headers=headers, extra=extra
    )
