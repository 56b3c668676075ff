"""Escalation through the gateway to a real OpenAI-compatible server: the first rung is
forced to fail, the second rung is llama-cpp-python's ``llama_cpp.server`` on the bundled
SmolLM2 (started by the ``llama_server`` fixture), and the trace shows both attempts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI

from modelladder.fleet import parse_fleet
from modelladder.traces import TraceStore
from tests.support.gateway import WEATHER, directive, gateway, scripted

pytestmark = [pytest.mark.model, pytest.mark.server]


@pytest.fixture(scope="module")
def env(llama_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    fleet = parse_fleet(
        {
            "rung": [
                # scripted: answers what each test tells it to (here: something that fails)
                {"name": "broken", "backend": "openai", "url": "http://127.0.0.1:9/v1", "params": 1},
                {"name": "remote", "backend": "openai", "url": llama_server, "model": "smollm2-135m",
                 "params": 135_000_000, "placement": "cloud"},
            ]
        },
        "<escalation>",
    )  # fmt: skip
    store = TraceStore(tmp_path_factory.mktemp("gw-esc") / "traces.sqlite")
    with gateway(fleet, store, {"broken": scripted("broken")}) as srv:
        yield {
            "store": store,
            "client": OpenAI(base_url=srv.base_url + "/v1", api_key="unused", max_retries=0),
        }
    store.close()


def test_free_text_escalates_to_the_remote_rung(env: dict[str, Any]) -> None:
    raw = env["client"].chat.completions.with_raw_response.create(
        model="ladder", messages=[{"role": "user", "content": directive(broken="") + " Say hi."}],
        max_tokens=12,
    )  # fmt: skip
    r = raw.parse()
    assert r.model == "remote" and r.choices[0].message.content
    assert raw.headers["x-modelladder-rung"] == "remote" and raw.headers["x-modelladder-attempts"] == "2"
    assert raw.headers["x-modelladder-escalation-reason"] == "contract:empty_output"
    run = env["store"].get_run(raw.headers["x-modelladder-run-id"])
    assert run.outcome == "resolved" and run.rung == "remote"
    assert [(a.rung, a.accepted, a.escalation_reason) for a in run.attempts] == [
        ("broken", False, "contract:empty_output"),
        ("remote", True, None),
    ]


def test_tool_call_escalates_past_a_backend_error(env: dict[str, Any]) -> None:
    raw = env["client"].chat.completions.with_raw_response.create(
        model="ladder",
        messages=[{"role": "user", "content": directive(broken={"error": "unreachable"}) + " Weather in Oslo?"}],
        tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=48,
    )  # fmt: skip
    (call,) = raw.parse().choices[0].message.tool_calls
    assert call.function.name == "get_weather" and isinstance(
        json.loads(call.function.arguments)["city"], str
    )
    assert raw.headers["x-modelladder-rung"] == "remote"
    run = env["store"].get_run(raw.headers["x-modelladder-run-id"])
    assert [(a.rung, a.error, a.escalation_reason) for a in run.attempts] == [
        ("broken", "unreachable", "backend:unreachable"),
        ("remote", None, None),
    ]
