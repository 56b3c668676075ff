"""The gateway's HTTP API on a real socket, driven by the official ``openai`` client, with
scripted rungs: response shapes, streaming, headers, traces, feedback, errors, metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from modelladder.traces import TraceStore
from tests.support.gateway import PERSON, TIME, WEATHER, directive, gateway, scripted, scripted_fleet

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    store = TraceStore(tmp_path_factory.mktemp("gw") / "traces.sqlite")
    fleet = scripted_fleet("tiny", "small", "dead", steps={"extract": {"max_rung": "small"}})
    backends = {
        "tiny": scripted("tiny"),
        "small": scripted("small"),
    }  # "dead" is a real, unreachable endpoint
    with (
        gateway(fleet, store, backends) as srv,
        OpenAI(base_url=srv.base_url + "/v1", api_key="unused", max_retries=0) as client,
        httpx.Client(base_url=srv.base_url) as http,
    ):
        yield {"srv": srv, "store": store, "client": client, "http": http}
    store.close()


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# -- shapes ----------------------------------------------------------------------------------


def test_plain_chat_shape_headers_and_trace(env: dict[str, Any]) -> None:
    raw = env["client"].chat.completions.with_raw_response.create(
        model="ladder", messages=user("hello there")
    )
    r = raw.parse()
    run_id = raw.headers["x-modelladder-run-id"]
    assert r.id == f"chatcmpl-{run_id}" and r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "echo hello there"
    assert r.choices[0].finish_reason == "stop" and r.model == "tiny"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0
    assert raw.headers["x-modelladder-rung"] == "tiny" and raw.headers["x-modelladder-attempts"] == "1"
    run = env["store"].get_run(run_id)
    assert run.outcome == "resolved" and run.rung == "tiny" and run.tags["via"] == "gateway"
    assert run.messages == [{"role": "user", "content": "hello there"}]


def test_single_tool_call(env: dict[str, Any]) -> None:
    raw = env["client"].chat.completions.with_raw_response.create(
        model="ladder", messages=user("weather in Paris?"), tools=[WEATHER, TIME], tool_choice="required"
    )
    r = raw.parse()
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls" and msg.content is None
    (call,) = msg.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert env["store"].get_run(raw.headers["x-modelladder-run-id"]).value == [
        {"name": "get_weather", "arguments": {"city": "Paris"}}
    ]


def test_named_tool_choice(env: dict[str, Any]) -> None:
    r = env["client"].chat.completions.create(
        model="ladder", messages=user("what time is it"), tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )  # fmt: skip
    assert [c.function.name for c in r.choices[0].message.tool_calls] == ["get_time"]


def test_parallel_tool_calls_and_escalation_on_too_many(env: dict[str, Any]) -> None:
    two = '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {"tz": "CET"}}]</tool_call>'
    r = env["client"].chat.completions.create(
        model="ladder", messages=user(directive(default=two)), tools=[WEATHER, TIME], tool_choice="required"
    )
    calls = r.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert len({c.id for c in calls}) == 2
    # parallel_tool_calls=False: two calls break the contract, the next rung answers with one
    raw = env["client"].chat.completions.with_raw_response.create(
        model="ladder", messages=user(directive(tiny=two)), tools=[WEATHER, TIME], tool_choice="required",
        parallel_tool_calls=False,
    )  # fmt: skip
    assert len(raw.parse().choices[0].message.tool_calls) == 1
    assert raw.headers["x-modelladder-rung"] == "small"
    assert raw.headers["x-modelladder-escalation-reason"] == "contract:too_many_calls"
    run = env["store"].get_run(raw.headers["x-modelladder-run-id"])
    assert [a.rung for a in run.attempts] == ["tiny", "small"]


def test_tool_choice_none_and_auto_text(env: dict[str, Any]) -> None:
    r = env["client"].chat.completions.create(
        model="ladder", messages=user("just talk"), tools=[WEATHER], tool_choice="none"
    )
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content == "echo just talk"
    # auto: a plain-text reply is a decline, returned as the answer
    r = env["client"].chat.completions.create(
        model="ladder", messages=user(directive(default="No tool needed, hello!")), tools=[WEATHER]
    )
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].message.content == "No tool needed, hello!" and r.choices[0].finish_reason == "stop"


def test_json_schema_strict_and_json_object(env: dict[str, Any]) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": PERSON}}
    r = env["client"].chat.completions.create(model="ladder", messages=user("Bob, 30"), response_format=fmt)
    assert json.loads(r.choices[0].message.content) == {"name": "Bob", "age": 30}
    # tiny breaks the schema, small satisfies it
    raw = env["client"].chat.completions.with_raw_response.create(
        model="ladder", messages=user(directive(tiny='{"name": "Bob"}', small='{"name": "Al", "age": 4}')),
        response_format=fmt,
    )  # fmt: skip
    assert json.loads(raw.parse().choices[0].message.content) == {"name": "Al", "age": 4}
    assert raw.headers["x-modelladder-escalation-reason"] == "contract:schema_violation"
    r = env["client"].chat.completions.create(
        model="ladder",
        messages=user(directive(default='{"a": [1, 2]}')),
        response_format={"type": "json_object"},
    )
    assert json.loads(r.choices[0].message.content) == {"a": [1, 2]}


def test_max_tokens_truncation_and_stop(env: dict[str, Any]) -> None:
    r = env["client"].chat.completions.create(
        model="ladder", messages=user("one two three four five"), max_tokens=3
    )
    assert r.choices[0].finish_reason == "length" and r.choices[0].message.content == "echo one two"
    r = env["client"].chat.completions.create(
        model="ladder", messages=user("one two three"), max_completion_tokens=50, stop=["two"]
    )
    assert r.choices[0].message.content == "echo one " and r.choices[0].finish_reason == "stop"


def _collect(stream: Any) -> tuple[list[Any], str, dict[int, dict[str, str]], str | None, Any]:
    chunks = list(stream)
    content, calls, finish, usage = "", {}, None, None
    for ch in chunks:
        assert ch.object == "chat.completion.chunk"
        if ch.usage is not None:
            usage = ch.usage
        for choice in ch.choices:
            content += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] += tc.id or ""
                slot["name"] += (tc.function.name or "") if tc.function else ""
                slot["arguments"] += (tc.function.arguments or "") if tc.function else ""
            finish = choice.finish_reason or finish
    return chunks, content, calls, finish, usage


def test_streaming_text(env: dict[str, Any]) -> None:
    stream = env["client"].chat.completions.create(
        model="ladder",
        messages=user("a b c d e f g h i j"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks, content, calls, finish, usage = _collect(stream)
    assert content == "echo a b c d e f g h i j" and not calls and finish == "stop"
    assert len(chunks) > 3 and chunks[0].choices[0].delta.role == "assistant"
    assert usage is not None and usage.total_tokens > 0 and chunks[-1].choices == []
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    env["store"].get_run(chunks[0].id.removeprefix("chatcmpl-"))


def test_streaming_tool_calls_raw_sse(env: dict[str, Any]) -> None:
    two = '<tool_call>[{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "get_time", "arguments": {"tz": "UTC"}}]</tool_call>'
    stream = env["client"].chat.completions.create(
        model="ladder", messages=user(directive(default=two)), tools=[WEATHER, TIME], tool_choice="required",
        stream=True,
    )  # fmt: skip
    _, content, calls, finish, usage = _collect(stream)
    assert finish == "tool_calls" and content == "" and usage is None
    assert [calls[i]["name"] for i in (0, 1)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Oslo"} and json.loads(calls[1]["arguments"]) == {
        "tz": "UTC"
    }
    assert all(c["id"].startswith("call_") for c in calls.values())
    # the wire format itself: SSE events and the [DONE] sentinel
    body = {"model": "ladder", "messages": user("hi"), "stream": True}
    resp = env["http"].post("/v1/chat/completions", json=body)
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = [e for e in resp.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


# -- models, feedback, health, metrics -----------------------------------------------------------


def test_models(env: dict[str, Any]) -> None:
    ids = [m.id for m in env["client"].models.list().data]
    assert ids == ["ladder", "ladder/extract", "tiny", "small", "dead"]
    assert env["client"].models.retrieve("ladder/extract").id == "ladder/extract"
    with pytest.raises(openai.NotFoundError):
        env["client"].models.retrieve("gpt-5")


def test_named_step_and_single_rung(env: dict[str, Any]) -> None:
    raw = env["client"].chat.completions.with_raw_response.create(
        model="ladder/extract", messages=user(directive(tiny="")), max_tokens=5
    )
    assert raw.headers["x-modelladder-rung"] == "small" and raw.headers["x-modelladder-step"] == "extract"
    assert env["store"].get_run(raw.headers["x-modelladder-run-id"]).step == "extract"
    # a rung by name: that rung only, no escalation -> its failure is the answer
    with pytest.raises(openai.UnprocessableEntityError):
        env["client"].chat.completions.create(model="tiny", messages=user(directive(tiny="")))
    r = env["client"].chat.completions.create(model="small", messages=user("x"))
    assert r.model == "small"


def test_feedback(env: dict[str, Any]) -> None:
    r = env["client"].chat.completions.create(model="ladder", messages=user("rate me"))
    ok = env["http"].post("/v1/feedback", json={"run_id": r.id, "success": False, "note": "wrong city"})
    assert ok.status_code == 200 and ok.json() == {"object": "feedback", "run_id": r.id[9:], "success": False}
    run = env["store"].get_run(r.id.removeprefix("chatcmpl-"))
    assert run.feedback_success is False and run.feedback_note == "wrong city"
    # the openai SDK can post it too, with its generic request method
    ack = env["client"].post("/feedback", body={"run_id": r.id, "success": True}, cast_to=object)
    assert ack["success"] is True and env["store"].get_run(r.id[9:]).feedback_success is True
    missing = env["http"].post("/v1/feedback", json={"run_id": "nope", "success": True})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "run_not_found"
    bad = env["http"].post("/v1/feedback", json={"run_id": r.id, "success": "maybe"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "success"


def test_health_and_metrics(env: dict[str, Any]) -> None:
    h = env["http"].get("/healthz")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    env["client"].chat.completions.create(
        model="ladder", messages=user(directive(tiny='{"x": 1}')), response_format={"type": "json_schema",
        "json_schema": {"name": "p", "schema": PERSON}},
    )  # fmt: skip
    text = env["http"].get("/metrics").text
    assert 'modelladder_http_requests_total{route="/v1/chat/completions",status="200"}' in text
    assert 'modelladder_escalations_total{reason="contract:schema_violation"}' in text
    assert 'modelladder_contract_failures_total{rung="tiny",reason="schema_violation"}' in text
    assert 'modelladder_attempt_duration_seconds_bucket{rung="small",le="+Inf"}' in text
    assert 'modelladder_queue_depth{queue="tiny"} 0' in text
    assert "# TYPE modelladder_request_duration_seconds histogram" in text


# -- errors ------------------------------------------------------------------------------------


def _err(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "ladder", "messages": "hi"}, "messages", None),
        ({"model": "ladder", "messages": []}, "messages", None),
        ({"model": "ladder", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", None),
        ({"model": "ladder", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature", None),
        ({"model": "ladder", "messages": [{"role": "user", "content": "x"}], "frobnicate": 1}, "frobnicate",
         "unrecognized_argument"),
        ({"model": "ladder", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema",
          "json_schema": {"name": "x", "schema": {"type": "nope"}}}}, "response_format.json_schema.schema",
             "invalid_json_schema"),
        ({"model": "ladder", "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER],
          "tool_choice": {"type": "function", "function": {"name": "launch"}}}, "tool_choice", "invalid_value"),
        ({"model": "ladder", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function",
          "function": {"name": "f", "parameters": {"type": "array"}}}]}, "tools", "invalid_tools"),
        ({"model": "ladder", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}, "tool_choice",
         "invalid_value"),
        ({"model": "ladder", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n", "invalid_value"),
        ({"model": "ladder", "messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}, "max_tokens",
         "invalid_value"),
        ({"model": "ladder", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
         "messages[0].content", "unsupported_content"),
    ],
)  # fmt: skip
def test_400s(env: dict[str, Any], body: dict[str, Any], param: str, code: str | None) -> None:
    err = _err(env["http"].post("/v1/chat/completions", json=body), 400)
    assert err["param"] == param and err["type"] == "invalid_request_error"
    if code:
        assert err["code"] == code


def test_malformed_json_and_sdk_error_mapping(env: dict[str, Any]) -> None:
    err = _err(
        env["http"].post("/v1/chat/completions", content=b'{"model": "ladder", "messages": [',
                         headers={"content-type": "application/json"}),
        400,
    )  # fmt: skip
    assert err["code"] == "invalid_json"
    with pytest.raises(openai.BadRequestError) as exc:
        env["client"].chat.completions.create(model="ladder", messages=user("x"), extra_body={"bogus": True})
    assert exc.value.body["code"] == "unrecognized_argument"  # type: ignore[index]


def test_unknown_model_404(env: dict[str, Any]) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        env["client"].chat.completions.create(model="gpt-4o", messages=user("x"))
    assert exc.value.body["code"] == "model_not_found" and exc.value.body["param"] == "model"  # type: ignore[index]
    err = _err(
        env["http"].post("/v1/chat/completions", json={"model": "ladder/nope", "messages": user("x")}), 404
    )
    assert "ladder/extract" in err["message"]
    _err(env["http"].get("/v1/nothing-here"), 404)


def test_422_lists_every_attempt_and_is_traced(env: dict[str, Any]) -> None:
    resp = env["http"].post(
        "/v1/chat/completions",
        json={"model": "ladder/extract", "messages": user(directive(tiny="not json", small='{"age": "x"}')),
              "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}},
    )  # fmt: skip
    err = _err(resp, 422)
    assert err["code"] == "contract_unsatisfied"
    assert (
        "tiny: contract:parse_error" in err["message"]
        and "small: contract:schema_violation" in err["message"]
    )
    attempts = resp.json()["modelladder"]["attempts"]
    assert [a["rung"] for a in attempts] == ["tiny", "small"]
    run = env["store"].get_run(resp.headers["x-modelladder-run-id"])
    assert run.outcome == "unresolved" and len(run.attempts) == 2


def test_503_when_no_rung_is_reachable(env: dict[str, Any]) -> None:
    err = _err(env["http"].post("/v1/chat/completions", json={"model": "dead", "messages": user("x")}), 503)
    assert err["code"] == "no_rung_available" and "unreachable" in err["message"]
    with pytest.raises(openai.InternalServerError):
        env["client"].chat.completions.create(
            model="tiny", messages=user(directive(tiny={"error": "timeout"}))
        )
    # an unreachable rung on the way up is escalated past, not an error
    raw = env["client"].chat.completions.with_raw_response.create(
        model="ladder", messages=user(directive(tiny={"error": "unreachable"}))
    )
    assert raw.headers["x-modelladder-rung"] == "small"
    assert raw.headers["x-modelladder-escalation-reason"] == "backend:unreachable"


def test_agent_loop_turns_are_accepted(env: dict[str, Any]) -> None:
    """A second agent turn: the assistant's tool call and the tool's result go back in."""
    first = env["client"].chat.completions.create(
        model="ladder", messages=user("weather in Paris?"), tools=[WEATHER], tool_choice="required"
    )
    call = first.choices[0].message.tool_calls[0]
    history = [
        *user("weather in Paris?"),
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    r = env["client"].chat.completions.create(model="ladder", messages=history, tools=[WEATHER])
    assert r.choices[0].finish_reason in ("stop", "tool_calls")
    run = env["store"].get_run(r.id.removeprefix("chatcmpl-"))
    assert run.messages[1]["tool_calls"][0]["id"] == call.id and run.messages[2]["role"] == "tool"


def test_contracts_are_cached_in_declaration_order() -> None:
    from modelladder.gateway.schemas import ChatCompletionRequest
    from modelladder.gateway.translate import _contract

    def req(props: dict[str, Any]) -> ChatCompletionRequest:
        tool = {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "object", "properties": props}},
        }
        return ChatCompletionRequest.model_validate(
            {"messages": user("x"), "tools": [tool], "tool_choice": "required"}
        )

    ba = {"b": {"type": "string"}, "a": {"type": "string"}}
    first, kind = _contract(req(ba))
    assert kind == "tools" and _contract(req(ba))[0] is first  # built once, reused
    assert list(first.tools[0]["parameters"]["properties"]) == ["b", "a"]  # type: ignore[union-attr]
    other, _ = _contract(req(dict(reversed(ba.items()))))
    assert other is not first and list(other.tools[0]["parameters"]["properties"]) == ["a", "b"]  # type: ignore[union-attr]
