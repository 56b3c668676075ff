"""Agent loops through the gateway, with scripted rungs (the real-model versions are in
``test_frameworks.py``): call or answer under ``auto``, tools with a response format, the
loop guard, every field of the OpenAI request, and the error paths that name the problem."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import OpenAI
from openai.types.chat.completion_create_params import CompletionCreateParamsBase

from modelladder.gateway.schemas import IGNORED_FIELDS
from modelladder.traces import TraceStore
from tests.support.gateway import WEATHER, directive, gateway, scripted, scripted_fleet

pytestmark = pytest.mark.server

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
    "required": ["city", "temp_c"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    store = TraceStore(tmp_path_factory.mktemp("loops") / "traces.sqlite")
    backends = {"tiny": scripted("tiny"), "small": scripted("small")}
    with (
        gateway(scripted_fleet("tiny", "small"), store, backends) as srv,
        OpenAI(base_url=srv.base_url + "/v1", api_key="unused", max_retries=0) as client,
        httpx.Client(base_url=srv.base_url) as http,
    ):
        yield {"store": store, "client": client, "http": http}
    store.close()


def _after_call(question: str, args: dict[str, Any], result: str) -> list[dict[str, Any]]:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps(args)},
    }
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": result},
    ]


def test_auto_answers_in_text_and_records_the_choice(env: dict[str, Any]) -> None:
    r = env["client"].chat.completions.create(
        model="ladder",
        messages=[{"role": "user", "content": directive(tiny="Hello to you!")}],
        tools=[WEATHER],
    )
    assert r.choices[0].message.content == "Hello to you!" and r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.tool_calls is None
    run = env["store"].get_run(r.id.removeprefix("chatcmpl-"))
    assert run.attempts[0].value == {"answer": "Hello to you!"} and run.attempts[0].decision == "answer"


def test_repeated_answered_call_escalates_then_answers(env: dict[str, Any]) -> None:
    """Both rungs repeat the call whose result is in the conversation: each attempt fails
    with loop:repeated_call, and the smallest looping rung answers with calls ruled out."""
    messages = _after_call("Weather in Paris?", {"city": "Paris"}, "sunny, 21 C")
    raw = env["client"].chat.completions.with_raw_response.create(
        model="ladder", messages=messages, tools=[WEATHER]
    )
    r = raw.parse()
    assert r.choices[0].message.content == "echo answer" and r.choices[0].finish_reason == "stop"
    assert raw.headers["x-modelladder-escalation-reason"] == "loop:repeated_call,loop:repeated_call"
    assert raw.headers["x-modelladder-rung"] == "tiny" and raw.headers["x-modelladder-attempts"] == "3"
    run = env["store"].get_run(r.id.removeprefix("chatcmpl-"))
    assert [a.decision for a in run.attempts] == ["call", "call", "answer"]
    metrics = env["http"].get("/metrics").text
    assert 'modelladder_escalations_total{reason="loop:repeated_call"}' in metrics


def test_a_new_call_is_not_a_loop(env: dict[str, Any]) -> None:
    messages = _after_call("Weather in Paris and Rome?", {"city": "Rome"}, "rain, 12 C")
    r = env["client"].chat.completions.create(model="ladder", messages=messages, tools=[WEATHER])
    assert r.choices[0].finish_reason == "tool_calls"  # Scripted calls get_weather(city="Paris")


def test_tools_with_response_format_answer_with_the_schema(env: dict[str, Any]) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": ANSWER_SCHEMA, "strict": True}}
    good = '{"city": "Paris", "temp_c": 21}'
    r = env["client"].chat.completions.create(
        model="ladder", messages=[{"role": "user", "content": directive(tiny=good)}], tools=[WEATHER],
        response_format=fmt,
    )  # fmt: skip
    assert json.loads(r.choices[0].message.content or "") == {"city": "Paris", "temp_c": 21}
    # a final answer that breaks the schema escalates; a call still satisfies the tools
    raw = env["client"].chat.completions.with_raw_response.create(
        model="ladder", messages=[{"role": "user", "content": directive(tiny='{"city": 3}', small=good)}],
        tools=[WEATHER], response_format=fmt,
    )  # fmt: skip
    assert raw.headers["x-modelladder-rung"] == "small"
    assert raw.headers["x-modelladder-escalation-reason"] == "contract:schema_violation"
    call = env["client"].chat.completions.create(
        model="ladder",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER],
        response_format=fmt,
    )
    assert call.choices[0].finish_reason == "tool_calls"


# Valid values for every field of the OpenAI chat-completions request. A field the openai
# package adds later fails test_every_openai_request_field_is_accepted until it is listed here.
SAMPLES: dict[str, Any] = {
    "messages": [{"role": "user", "content": "hi"}], "model": "ladder",
    "audio": {"voice": "alloy", "format": "mp3"}, "frequency_penalty": 0.5, "function_call": "auto",
    "functions": [{"name": "f", "parameters": {"type": "object", "properties": {}}}], "logit_bias": {"50256": -100},
    "logprobs": False, "max_completion_tokens": 50, "max_tokens": 50, "metadata": {"k": "v"},
    "modalities": ["text"], "moderation": {"model": "omni-moderation-latest"}, "n": 1, "parallel_tool_calls": True,
    "prediction": {"type": "content", "content": "hi"}, "presence_penalty": 0.1, "prompt_cache_key": "k",
    "prompt_cache_options": {"ttl": "5m"}, "prompt_cache_retention": "24h", "reasoning_effort": "low",
    "response_format": {"type": "text"}, "safety_identifier": "u1", "seed": 3, "service_tier": "auto",
    "stop": ["\n\n"], "store": False, "stream_options": None, "temperature": 0.0, "tool_choice": "auto",
    "tools": [WEATHER], "top_logprobs": 2, "top_p": 1.0, "user": "u1", "verbosity": "low",
    "web_search_options": {"search_context_size": "low"},
}  # fmt: skip


@pytest.mark.parametrize("field", sorted(CompletionCreateParamsBase.__annotations__))
def test_every_openai_request_field_is_accepted(env: dict[str, Any], field: str) -> None:
    assert field in SAMPLES, f"the openai package has a new request field {field!r}: decide and list it"
    body = {"model": "ladder", "messages": [{"role": "user", "content": "hi"}], field: SAMPLES[field]}
    resp = env["http"].post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    if field in IGNORED_FIELDS:
        assert field in resp.headers["x-modelladder-ignored"].split(",")
        run = env["store"].get_run(resp.json()["id"].removeprefix("chatcmpl-"))
        assert field in run.tags["ignored"].split(",")


def test_malformed_values_are_rejected_with_the_field_named(env: dict[str, Any]) -> None:
    for field, bad in (("modalities", ["smell"]), ("functions", "f"), ("top_p", "high"), ("audio", 3)):
        body = {"model": "ladder", "messages": [{"role": "user", "content": "hi"}], field: bad}
        err = env["http"].post("/v1/chat/completions", json=body).json()["error"]
        assert err["param"].startswith(field) and err["type"] == "invalid_request_error", err


def test_bad_json_schema_name_names_the_right_param(env: dict[str, Any]) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "has space", "schema": ANSWER_SCHEMA}}
    body = {"model": "ladder", "messages": [{"role": "user", "content": "hi"}], "response_format": fmt}
    err = env["http"].post("/v1/chat/completions", json=body).json()["error"]
    assert err["param"] == "response_format.json_schema.name", err
