"""Shared helpers for the gateway tests: a scripted backend that answers
instantly and predictably, the fleet it serves, and a gateway running on a real socket.

Why scripted rungs: the API's shapes, errors, queueing and auth do not depend on what a
model says, so they are tested with backends whose answers the test chooses; the real
model is exercised in test_gateway_model.py, test_gateway_load.py and
test_gateway_escalation.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from modelladder import ScriptedBackend
from modelladder.backends import BackendError, Call, Generation
from modelladder.contracts import JsonSchema, ToolCalls
from modelladder.contracts.tools import render_calls
from modelladder.fleet import Fleet, parse_fleet
from modelladder.gateway import GatewayConfig, create_app
from modelladder.gateway.server import BackgroundServer
from modelladder.traces import TraceStore

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def directive(**per_rung: Any) -> str:
    """A user message that tells each scripted rung what to do: a reply text, or
    ``{"error": code}``, or ``{"sleep": s, "reply": text}``; ``default`` for the others.
    Text may follow it (real rungs read the whole message)."""
    return "!" + json.dumps(per_rung)


def scripted(name: str, delay_s: float = 0.0) -> ScriptedBackend:
    """A rung that answers at once (after ``delay_s``). Without a :func:`directive` it gives a
    valid answer for the contract (echo for free text, a call to the first allowed tool, the
    PERSON object)."""

    def default(call: Call) -> str:
        contract = call.contract
        if isinstance(contract, ToolCalls) and not contract.calls:  # the loop guard's answer-only retry
            return json.dumps({"name": "Bob", "age": 30}) if contract.answer is not True else "echo answer"
        if isinstance(contract, ToolCalls):
            tool = next(t for t in contract.tools if t["name"] in contract._allowed)
            arg = next(iter(tool["parameters"].get("properties", {})), None)
            return render_calls([{"name": tool["name"], "arguments": {arg: "Paris"} if arg else {}}])
        if isinstance(contract, JsonSchema):
            return json.dumps({"name": "Bob", "age": 30})
        return f"echo {call.last_content}"

    def handler(call: Call) -> Generation:
        last = call.last_content
        plan: Any = None
        if last.startswith("!"):
            script, _ = json.JSONDecoder().raw_decode(last[1:])  # text may follow the directive
            plan = script.get(name, script.get("default"))
        if isinstance(plan, dict):
            if "sleep" in plan:
                time.sleep(plan["sleep"])
            if "error" in plan:
                raise BackendError(plan["error"], f"{name}: scripted {plan['error']}")
            plan = plan.get("reply")
        text = plan if isinstance(plan, str) else default(call)
        words = text.split()
        finish = "length" if call.contract is None and len(words) > call.params.max_tokens else "stop"
        if finish == "length":
            text = " ".join(words[: call.params.max_tokens])
        return Generation(text=text, prompt_tokens=10, completion_tokens=len(words), latency_s=0.001,
                          finish_reason=finish)  # fmt: skip

    return ScriptedBackend(name, handler, delay_s=delay_s)


def scripted_fleet(*names: str, steps: dict[str, dict[str, Any]] | None = None) -> Fleet:
    """Rungs of increasing size (edge placement); their backends are always :func:`scripted`."""
    rungs = [
        {"name": n, "backend": "openai", "url": "http://127.0.0.1:9/v1", "params": i + 1}
        for i, n in enumerate(names or ("tiny", "small"))
    ]
    return parse_fleet({"rung": rungs, "step": steps or {}}, "<scripted>")


@contextmanager
def gateway(
    fleet: Fleet,
    store: TraceStore,
    backends: dict[str, Any] | None = None,
    telemetry: Any = None,
    **config: Any,
) -> Iterator[BackgroundServer]:
    config.setdefault("api_keys", ())
    app = create_app(fleet, store, config=GatewayConfig(**config), backends=backends, telemetry=telemetry)
    with BackgroundServer(app) as srv:
        srv.app = app  # type: ignore[attr-defined]
        yield srv
