"""Legacy ``functions``/``function_call`` requests end to end: the official ``openai`` client
on a real socket, scripted rungs. The answer comes back as ``message.function_call``
(streamed as ``delta.function_call``), and a follow-up hop's ``role: "function"`` result
reaches the ladder as a ``role: "tool"`` result of the call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from modelladder.traces import TraceStore
from tests.support.gateway import TIME, WEATHER, directive, gateway, scripted, scripted_fleet

pytestmark = pytest.mark.server

FUNCTIONS = [WEATHER["function"], TIME["function"]]
TWO = '<tool_call>[{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "get_time", "arguments": {"tz": "UTC"}}]</tool_call>'


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    store = TraceStore(tmp_path_factory.mktemp("legacy") / "traces.sqlite")
    backends = {"tiny": scripted("tiny"), "small": scripted("small")}
    with (
        gateway(scripted_fleet("tiny", "small"), store, backends) as srv,
        OpenAI(base_url=srv.base_url + "/v1", api_key="unused", max_retries=0) as client,
        httpx.Client(base_url=srv.base_url) as http,
    ):
        yield {"store": store, "client": client, "http": http, "backends": backends}
    store.close()


def _hop(result: str) -> list[dict[str, Any]]:
    """The second request of a legacy loop: the call the model made and its result."""
    call = {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "function_call": call},
        {"role": "function", "name": "get_weather", "content": result},
    ]


def test_a_call_comes_back_as_function_call(env: dict[str, Any]) -> None:
    raw = env["client"].chat.completions.with_raw_response.create(
        model="ladder", messages=[{"role": "user", "content": "what time is it?"}], functions=FUNCTIONS,
        function_call={"name": "get_time"},
    )  # fmt: skip
    r = raw.parse()
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "function_call" and msg.tool_calls is None and msg.content is None
    assert msg.function_call is not None and msg.function_call.name == "get_time"
    assert json.loads(msg.function_call.arguments) == {"tz": "Paris"}  # the scripted rung's default
    assert "x-modelladder-ignored" not in raw.headers  # functions are honoured now
    run = env["store"].get_run(raw.headers["x-modelladder-run-id"])
    assert run.tags["api"] == "functions"
    assert run.value == [{"name": "get_time", "arguments": {"tz": "Paris"}}]


def test_several_calls_are_cut_to_one_by_the_contract(env: dict[str, Any]) -> None:
    """Legacy functions run with parallel_tool_calls=False: two calls fail the contract and
    the next rung's single call is the answer."""
    raw = env["client"].chat.completions.with_raw_response.create(
        model="ladder", messages=[{"role": "user", "content": directive(tiny=TWO)}], functions=FUNCTIONS,
    )  # fmt: skip
    r = raw.parse()
    assert r.choices[0].finish_reason == "function_call"
    assert r.choices[0].message.function_call.name == "get_weather"
    assert raw.headers["x-modelladder-escalation-reason"] == "contract:too_many_calls"


def test_auto_text_answer_is_plain_content(env: dict[str, Any]) -> None:
    r = env["client"].chat.completions.create(
        model="ladder", messages=[{"role": "user", "content": directive(tiny="Hello!")}], functions=FUNCTIONS,
        function_call="auto",
    )  # fmt: skip
    msg = r.choices[0].message
    assert msg.content == "Hello!" and msg.function_call is None and r.choices[0].finish_reason == "stop"


def test_follow_up_hop_with_a_function_result(env: dict[str, Any]) -> None:
    before = len(env["backends"]["tiny"].calls)
    raw = env["client"].chat.completions.with_raw_response.create(
        model="ladder", messages=_hop(directive(tiny="It is sunny in Paris, 21 C.")), functions=FUNCTIONS
    )
    r = raw.parse()
    assert r.choices[0].message.content == "It is sunny in Paris, 21 C."
    assert r.choices[0].finish_reason == "stop"
    # what the rung was given: the call as tool_calls, the result as its role: tool answer
    seen = env["backends"]["tiny"].calls[before].messages
    assistant, tool = seen[-2], seen[-1]
    assert assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    assert "function_call" not in assistant
    assert tool["role"] == "tool" and tool["tool_call_id"] == assistant["tool_calls"][0]["id"]
    run = env["store"].get_run(raw.headers["x-modelladder-run-id"])
    assert [m["role"] for m in run.messages] == ["user", "assistant", "tool"]


def test_follow_up_hop_repeating_the_answered_call_is_a_loop(env: dict[str, Any]) -> None:
    """The scripted rungs call get_weather(city="Paris") again: the translated result
    answers that call, so the loop guard fails both attempts and the answer comes instead."""
    raw = env["client"].chat.completions.with_raw_response.create(
        model="ladder", messages=_hop("sunny, 21 C"), functions=FUNCTIONS
    )
    r = raw.parse()
    assert r.choices[0].message.content == "echo answer" and r.choices[0].message.function_call is None
    assert raw.headers["x-modelladder-escalation-reason"] == "loop:repeated_call,loop:repeated_call"


def test_mixing_functions_and_tools_is_a_400(env: dict[str, Any]) -> None:
    body = {"model": "ladder", "messages": [{"role": "user", "content": "hi"}], "functions": FUNCTIONS,
            "tools": [WEATHER]}  # fmt: skip
    resp = env["http"].post("/v1/chat/completions", json=body)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "conflicting_parameters" and err["param"] == "functions"
    assert "`functions`" in err["message"] and "`tools`" in err["message"]
    with pytest.raises(openai.BadRequestError, match="function_call.*tool_choice"):
        env["client"].chat.completions.create(
            model="ladder",
            messages=[{"role": "user", "content": "hi"}],
            function_call="auto",
            tool_choice="auto",
        )


def test_streamed_call_is_delta_function_call(env: dict[str, Any]) -> None:
    stream = env["client"].chat.completions.create(
        model="ladder", messages=[{"role": "user", "content": "weather?"}], functions=FUNCTIONS,
        function_call={"name": "get_weather"}, stream=True,
    )  # fmt: skip
    name, arguments, finish = "", "", None
    for chunk in stream:
        for choice in chunk.choices:
            assert choice.delta.tool_calls is None
            if choice.delta.function_call is not None:
                name += choice.delta.function_call.name or ""
                arguments += choice.delta.function_call.arguments or ""
            finish = choice.finish_reason or finish
    assert name == "get_weather" and json.loads(arguments) == {"city": "Paris"} and finish == "function_call"
