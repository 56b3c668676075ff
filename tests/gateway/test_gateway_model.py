"""The gateway on the bundled SmolLM2-135M, driven by the official ``openai`` client: plain
chat, tool calls (single, parallel, none), strict JSON Schema, streaming of text and tool
calls. Every answer must parse and validate, and leave a trace under its run id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from openai import OpenAI

from modelladder.fleet import Fleet
from modelladder.traces import TraceStore
from tests.support.gateway import PERSON, TIME, WEATHER, gateway
from tests.support.models import SMOL, free_port

pytestmark = [pytest.mark.model, pytest.mark.server]


@pytest.fixture(scope="module")
def env(smol_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    store = TraceStore(tmp_path_factory.mktemp("gw-model") / "traces.sqlite")
    with gateway(smol_fleet, store, preload=True) as srv:
        yield {
            "store": store,
            "client": OpenAI(base_url=srv.base_url + "/v1", api_key="unused", max_retries=0),
        }
    store.close()


def _traced(env: dict[str, Any], completion_id: str) -> Any:
    run = env["store"].get_run(completion_id.removeprefix("chatcmpl-"))
    assert run.outcome == "resolved" and run.rung == "smollm2-135m" and run.tags["via"] == "gateway"
    return run


def _args_valid(call: Any, tools: list[dict[str, Any]]) -> dict[str, Any]:
    schema = next(t["function"]["parameters"] for t in tools if t["function"]["name"] == call.function.name)
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, schema)
    return args


def test_plain_chat(env: dict[str, Any]) -> None:
    r = env["client"].chat.completions.create(
        model="ladder", messages=[{"role": "user", "content": "Say hello."}], max_tokens=16
    )
    assert r.object == "chat.completion" and r.model == "smollm2-135m"
    assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens > 0
    _traced(env, r.id)


def test_single_tool_call(env: dict[str, Any]) -> None:
    tools = [WEATHER, TIME]
    r = env["client"].chat.completions.create(
        model="ladder", messages=[{"role": "user", "content": "What's the weather in Paris?"}], tools=tools,
        tool_choice="required", parallel_tool_calls=False, max_tokens=64,
    )  # fmt: skip
    (call,) = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and call.id.startswith("call_")
    _args_valid(call, tools)
    run = _traced(env, r.id)
    assert run.value[0]["name"] == call.function.name


def test_parallel_tool_calls(env: dict[str, Any]) -> None:
    tools = [WEATHER, TIME]
    r = env["client"].chat.completions.create(
        model="ladder",
        messages=[{"role": "user", "content": "What's the weather in Paris, and what time is it in Tokyo?"}],
        tools=tools, tool_choice="required", parallel_tool_calls=True, max_tokens=128,
    )  # fmt: skip
    calls = r.choices[0].message.tool_calls
    assert calls and len({c.id for c in calls}) == len(calls)
    for c in calls:
        _args_valid(c, tools)
    _traced(env, r.id)


def test_tool_choice_none(env: dict[str, Any]) -> None:
    r = env["client"].chat.completions.create(
        model="ladder", messages=[{"role": "user", "content": "Tell me about Paris."}], tools=[WEATHER],
        tool_choice="none", max_tokens=12,
    )  # fmt: skip
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content
    run = _traced(env, r.id)
    assert run.contract_digest is None


def test_json_schema_strict(env: dict[str, Any]) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": PERSON}}
    r = env["client"].chat.completions.create(
        model="ladder", messages=[{"role": "user", "content": "Bob is 30 years old. Extract the person."}],
        response_format=fmt, max_tokens=48,
    )  # fmt: skip
    value = json.loads(r.choices[0].message.content)
    jsonschema.validate(value, PERSON)
    assert _traced(env, r.id).value == value


def _collect(stream: Any) -> tuple[str, dict[int, dict[str, str]], str | None, set[str]]:
    content, calls, finish, ids = "", {}, None, set()
    for ch in stream:
        ids.add(ch.id)
        for choice in ch.choices:
            content += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                slot["name"] += tc.function.name or ""
                slot["arguments"] += tc.function.arguments or ""
            finish = choice.finish_reason or finish
    return content, calls, finish, ids


def test_streaming_text(env: dict[str, Any]) -> None:
    stream = env["client"].chat.completions.create(
        model="ladder",
        messages=[{"role": "user", "content": "Name three colours."}],
        max_tokens=24,
        stream=True,
    )
    content, calls, finish, ids = _collect(stream)
    assert content.strip() and not calls and finish in ("stop", "length") and len(ids) == 1
    run = _traced(env, ids.pop())
    assert content == run.text.strip() or content.startswith(run.text.strip()[:10])


def test_streaming_tool_calls(env: dict[str, Any]) -> None:
    stream = env["client"].chat.completions.create(
        model="ladder", messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=64, stream=True,
    )  # fmt: skip
    content, calls, finish, ids = _collect(stream)
    assert finish == "tool_calls" and calls[0]["name"] == "get_weather"
    jsonschema.validate(json.loads(calls[0]["arguments"]), WEATHER["function"]["parameters"])
    _traced(env, ids.pop())


def test_modelladder_serve_command(tmp_path: Path) -> None:
    """The CLI end to end: a fleet file, a trace store, the startup notice, a real answer."""
    fleet = tmp_path / "fleet.toml"
    fleet.write_text("[[rung]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in SMOL.items()))
    port = free_port()
    code = "import modelladder.cli.serve_cmd; from modelladder.cli import main; main()"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELLADDER_API_KEY")}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--port", str(port), "--fleet", str(fleet),
         "--db", str(tmp_path / "traces.sqlite"), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**env, "MODELLADDER_HOME": str(tmp_path)},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "modelladder serve did not start"
                time.sleep(0.2)
        client = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        r = client.chat.completions.create(model="smollm2-135m", messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=4)  # fmt: skip
        assert r.choices[0].message.content
    finally:
        proc.terminate()
        out = proc.communicate(timeout=15)[0].decode()
    assert "loopback" in out and f"http://127.0.0.1:{port}/v1" in out
    assert TraceStore(tmp_path / "traces.sqlite").count_runs() == 1


def test_interleaved_conversations_restore_their_prefix_and_show_in_metrics(env: dict[str, Any]) -> None:
    """Two agents alternating on one model: from its second hop on, each conversation's
    prompt comes back from the prompt cache (usage and /metrics say so)."""
    facts = " ".join(f"Fact {i}: box {i} holds {i * 11 % 17} marbles." for i in range(50))
    convs = {
        name: [{"role": "system", "content": f"You are {name}'s assistant. {facts}"}]
        for name in ("Ann", "Bob")
    }
    cached: dict[str, list[tuple[int, int]]] = {name: [] for name in convs}
    for hop in range(3):
        for name, messages in convs.items():
            messages.append({"role": "user", "content": f"Question {hop}: how many marbles in box {hop}?"})
            r = env["client"].chat.completions.create(model="ladder", messages=messages, max_tokens=8)
            messages.append({"role": "assistant", "content": r.choices[0].message.content or ""})
            cached[name].append((r.usage.prompt_tokens_details.cached_tokens, r.usage.prompt_tokens))
    for name, per_hop in cached.items():
        assert all(c >= 0.9 * p for c, p in per_hop[1:]), (name, per_hop)
    base_url = str(env["client"].base_url).removesuffix("/v1/")
    metrics = httpx.get(base_url + "/metrics").text
    hits = [line for line in metrics.splitlines() if line.startswith("modelladder_prompt_cache_hits_total{")]
    assert hits and sum(float(line.rsplit(" ", 1)[1]) for line in hits) >= 4
    assert "# TYPE modelladder_prompt_cache_hits_total counter" in metrics
