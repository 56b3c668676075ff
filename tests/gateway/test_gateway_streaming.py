"""Live streaming on the bundled models: free text goes out as it is decoded, and the
streamed text is exactly the validated answer the trace records; anything a later check
could still reject (tool calls) is buffered."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelladder.gateway import GatewayConfig, create_app
from modelladder.gateway.server import BackgroundServer
from modelladder.traces import TraceStore
from tests.support.gateway import WEATHER

pytestmark = [pytest.mark.model, pytest.mark.server]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    store = TraceStore(tmp_path_factory.mktemp("stream") / "traces.sqlite")
    with BackgroundServer(create_app(store=store, config=GatewayConfig(api_keys=()))) as srv:
        yield {"base": srv.base_url, "store": store}
    store.close()


def _stream(
    base: str, body: dict[str, Any]
) -> tuple[httpx.Headers, list[tuple[float, dict[str, Any]]], float]:
    t0 = time.perf_counter()
    events = []
    with httpx.stream("POST", base + "/v1/chat/completions", json={**body, "stream": True}, timeout=600) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append((time.perf_counter() - t0, json.loads(line[6:])))
        return r.headers, events, time.perf_counter() - t0


def test_free_text_streams_as_decoded_and_equals_the_validated_answer(env: dict[str, Any]) -> None:
    body = {
        "model": "ladder",
        "max_tokens": 60,
        "messages": [{"role": "user", "content": "Tell me about cats."}],
    }
    headers, events, done = _stream(env["base"], body)
    assert headers["x-modelladder-streamed"] == "live"
    content = [(t, e["choices"][0]["delta"]["content"]) for t, e in events
               if e["choices"] and e["choices"][0]["delta"].get("content")]  # fmt: skip
    assert len(content) > 3
    assert content[0][0] < events[-1][0]  # the first piece came before the end
    assert events[-1][1]["choices"][0]["finish_reason"] in ("stop", "length")
    run = env["store"].get_run(headers["x-modelladder-run-id"])
    assert "".join(c for _, c in content) == run.text.strip()


def test_request_stop_strings_cut_a_live_stream(env: dict[str, Any]) -> None:
    body = {"model": "ladder", "max_tokens": 60, "stop": ["."],
            "messages": [{"role": "user", "content": "Tell me about dogs."}]}  # fmt: skip
    _, events, _ = _stream(env["base"], body)
    text = "".join(e["choices"][0]["delta"].get("content") or "" for _, e in events if e["choices"])
    assert "." not in text and text


def test_tool_calls_are_buffered(env: dict[str, Any]) -> None:
    body = {
        "model": "ladder",
        "tools": [WEATHER],
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }
    headers, events, _ = _stream(env["base"], body)
    assert "x-modelladder-streamed" not in headers
    assert events[-1][1]["choices"][0]["finish_reason"] in ("tool_calls", "stop")
