"""OpenTelemetry: every run and attempt is a span with the GenAI conventions' attributes.

Two ways in: the SDK's in-memory exporter (the gateway in-process on a real socket, scripted
rungs, for the span shapes and every attribute), and a real OTLP/HTTP receiver on loopback
fed by ``modelladder serve`` in a subprocess over cloud rungs of backend ``openai`` against a
small OpenAI-compatible upstream (what a collector would get over the wire). Plus: tracing off
imports no OpenTelemetry at all, and a configuration that cannot work is one clear error.
"""

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
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from modelladder.backends import Generation
from modelladder.backends.scripted import Call, ScriptedBackend
from modelladder.gateway.otel import Telemetry, TelemetryConfigError, otlp_endpoint
from modelladder.traces import TraceStore
from tests.support.gateway import PERSON, WEATHER, directive, gateway, scripted, scripted_fleet
from tests.support.otlp import otlp_receiver, upstream

REPO = Path(__file__).resolve().parents[2]
MODELLADDER = str(Path(sys.executable).with_name("modelladder"))


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[Any, InMemorySpanExporter, TraceStore]]:
    """A gateway over two scripted rungs (50 ms each), tracing into an in-memory exporter."""
    fleet = scripted_fleet("tiny", "small")
    exporter = InMemorySpanExporter()
    store = TraceStore(tmp_path / "t.sqlite")
    backends = {"tiny": scripted("tiny", delay_s=0.05), "small": scripted("small", delay_s=0.05)}
    with gateway(
        fleet, store, backends, telemetry=Telemetry.with_exporter(fleet, exporter, batch=False)
    ) as srv:
        yield srv, exporter, store
    store.close()


def _split(spans: Any) -> tuple[Any, list[Any]]:
    runs = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(runs) == 1, [s.name for s in spans]
    return runs[0], sorted(
        (s for s in spans if s is not runs[0]), key=lambda s: s.attributes["modelladder.attempt.index"]
    )


def test_an_escalated_run_is_one_span_with_a_child_per_attempt(traced: Any) -> None:
    srv, exporter, store = traced
    body = {"model": "ladder", "messages": [{"role": "user", "content": directive(tiny="not json at all")}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}}  # fmt: skip
    r = httpx.post(srv.base_url + "/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    run, attempts = _split(exporter.get_finished_spans())
    run_id = r.headers["x-modelladder-run-id"]

    assert run.name == "invoke_workflow ladder"
    assert run.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert run.attributes["modelladder.run_id"] == run_id
    assert run.attributes["modelladder.outcome"] == "resolved"
    assert run.attributes["modelladder.rung"] == "small"
    assert run.attributes["modelladder.attempts"] == 2
    reason = r.headers["x-modelladder-escalation-reason"]
    assert tuple(run.attributes["modelladder.escalations"]) == (reason,)
    # the run carries no model and no gen_ai usage: backends would count it as an LLM call
    assert "gen_ai.request.model" not in run.attributes and "gen_ai.usage.input_tokens" not in run.attributes
    stored = store.get_run(run_id)
    assert run.attributes["gen_ai.conversation.id"] == stored.episode_id
    assert run.attributes["modelladder.usage.input_tokens"] == sum(a.attributes["gen_ai.usage.input_tokens"]
                                                                   for a in attempts)  # fmt: skip

    tiny, small = attempts
    assert [a.name for a in attempts] == ["chat tiny", "chat small"]
    for a in attempts:
        assert a.parent is not None and a.parent.span_id == run.context.span_id
        assert a.context.trace_id == run.context.trace_id
        assert a.kind == SpanKind.CLIENT  # backend openai: the call leaves the process
        assert a.attributes["gen_ai.operation.name"] == "chat"
        assert a.attributes["gen_ai.provider.name"] == "openai"
        assert a.attributes["server.address"] == "127.0.0.1" and a.attributes["server.port"] == 9
        assert a.attributes["modelladder.episode_id"] == stored.episode_id
        assert a.attributes["gen_ai.usage.input_tokens"] == 10
        assert a.attributes["gen_ai.request.max_tokens"] == 256
        assert run.start_time <= a.start_time <= a.end_time <= run.end_time
        # the span lasts what the attempt's latency says
        assert a.end_time - a.start_time == int(a.attributes["modelladder.latency_s"] * 1e9)
    assert tiny.end_time <= small.start_time  # one after another
    assert tiny.attributes["modelladder.escalation_reason"] == reason
    assert tiny.attributes["modelladder.accepted"] is False
    assert tiny.attributes["modelladder.verdict"] not in ("ok", None)
    assert tiny.status.status_code == StatusCode.UNSET  # a contract failure is no call error
    assert small.attributes["modelladder.accepted"] is True
    assert small.attributes["modelladder.verdict"] == "ok"
    assert small.attributes["gen_ai.request.model"] == small.attributes["gen_ai.response.model"] == "small"
    assert small.attributes["gen_ai.usage.output_tokens"] == stored.attempts[1].completion_tokens
    assert tuple(small.attributes["gen_ai.response.finish_reasons"]) == ("stop",)
    assert run.end_time - run.start_time >= 100_000_000  # two 50 ms attempts


def test_the_callers_trace_context_is_the_runs_parent(traced: Any) -> None:
    srv, exporter, _ = traced
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = httpx.post(srv.base_url + "/v1/chat/completions",
                   json={"model": "ladder", "messages": [{"role": "user", "content": "hi"}]},
                   headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})  # fmt: skip
    assert r.status_code == 200
    run, attempts = _split(exporter.get_finished_spans())
    assert format(run.context.trace_id, "032x") == trace_id
    assert run.parent is not None and format(run.parent.span_id, "016x") == parent_id
    assert len(attempts) == 1 and attempts[0].context.trace_id == run.context.trace_id


def test_an_unresolved_run_and_a_failed_call_are_error_spans(traced: Any) -> None:
    srv, exporter, _ = traced
    msg = directive(tiny={"error": "timeout"}, small={"error": "unreachable"})
    r = httpx.post(srv.base_url + "/v1/chat/completions",
                   json={"model": "ladder", "messages": [{"role": "user", "content": msg}]})  # fmt: skip
    assert r.status_code >= 400
    run, attempts = _split(exporter.get_finished_spans())
    assert run.status.status_code == StatusCode.ERROR
    assert run.attributes["modelladder.outcome"] == "unresolved"
    assert run.attributes["error.type"] == run.attributes["modelladder.unresolved_reason"]
    assert "modelladder.rung" not in run.attributes
    assert [a.attributes["error.type"] for a in attempts] == ["timeout", "unreachable"]
    assert all(a.status.status_code == StatusCode.ERROR for a in attempts)
    assert all("gen_ai.response.model" not in a.attributes for a in attempts)


def _streaming(call: Call) -> Generation:
    """A rung that hands its free text to ``on_text`` word by word, as llama.cpp does."""
    words = f"streamed answer to {call.last_content}".split()
    for i, w in enumerate(words):
        if call.params.on_text is not None:
            call.params.on_text(("" if i == 0 else " ") + w)
    return Generation(text=" ".join(words), prompt_tokens=7, completion_tokens=len(words), latency_s=0.002)


def test_a_live_stream_and_a_tool_call_are_traced(tmp_path: Path) -> None:
    fleet = scripted_fleet("tiny")
    exporter = InMemorySpanExporter()
    store = TraceStore(tmp_path / "t.sqlite")
    backends = {"tiny": ScriptedBackend("tiny", _streaming)}
    with gateway(
        fleet, store, backends, telemetry=Telemetry.with_exporter(fleet, exporter, batch=False)
    ) as srv:
        url = srv.base_url + "/v1/chat/completions"
        body = {"model": "ladder", "stream": True, "messages": [{"role": "user", "content": "me"}]}
        with httpx.stream("POST", url, json=body) as r:
            assert r.headers.get("x-modelladder-streamed") == "live"
            assert "streamed" in "".join(r.iter_text())
        live = exporter.get_finished_spans()
        backends["tiny"] = scripted("tiny")
    store.close()
    run, attempts = _split(live)
    assert run.attributes["modelladder.run_id"] == r.headers["x-modelladder-run-id"]
    assert [a.attributes["gen_ai.usage.output_tokens"] for a in attempts] == [4]


def test_a_tool_call_attempt_carries_its_decision(traced: Any) -> None:
    srv, exporter, _ = traced
    r = httpx.post(srv.base_url + "/v1/chat/completions", json={"model": "ladder", "tools": [WEATHER],
                   "messages": [{"role": "user", "content": "weather in Paris?"}]})  # fmt: skip
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["tool_calls"]
    run, attempts = _split(exporter.get_finished_spans())
    assert [a.attributes["modelladder.decision"] for a in attempts] == ["call"]
    assert run.attributes["modelladder.step"] == "default"


def _fleet_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(
        f'[[rung]]\nname = "mini"\nbackend = "openai"\nurl = "{url}"\nmodel = "mini-1"\nparams = 1\n'
        'placement = "cloud"\nprice_in_per_m = 1.0\nprice_out_per_m = 4.0\n\n'
        f'[[rung]]\nname = "big"\nbackend = "openai"\nurl = "{url}"\nmodel = "big-1"\nparams = 2\n'
        'placement = "cloud"\nprice_in_per_m = 3.0\nprice_out_per_m = 15.0\n'
    )
    return path


def _call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"tool_calls": [{"id": "c1", "type": "function",
                            "function": {"name": name, "arguments": json.dumps(args)}}]}  # fmt: skip


@pytest.mark.server
def test_modelladder_serve_sends_its_spans_to_a_real_otlp_receiver(tmp_path: Path) -> None:
    """The whole way: serve (subprocess) -> cloud rungs over HTTP -> OTLP/HTTP protobuf -> a
    receiver. The batch delay is a minute, so the spans can only arrive by the flush at
    shutdown: what a gateway stopped by its orchestrator must not lose."""

    def script(model: str, req: dict[str, Any]) -> dict[str, Any]:  # mini calls a tool it was not offered
        return _call("get_time" if model == "mini-1" else "get_weather", {"city": "Paris"})

    with upstream(script) as up, otlp_receiver() as rec:
        port = _free_port()
        env = {**os.environ, "MODELLADDER_HOME": str(tmp_path), "OTEL_EXPORTER_OTLP_ENDPOINT": rec.endpoint,
               "OTEL_SERVICE_NAME": "modelladder-test", "OTEL_BSP_SCHEDULE_DELAY": "60000",
               "PYTHONPATH": str(REPO / "src")}  # fmt: skip
        for var in ("MODELLADDER_FLEET", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            env.pop(var, None)
        proc = subprocess.Popen(
            [MODELLADDER, "serve", "--port", str(port), "--log-level", "warning",
             "--fleet", str(_fleet_file(tmp_path, up.url)), "--no-preload"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_healthy(base, proc)
            r = httpx.post(base + "/v1/chat/completions", timeout=30, json={
                "model": "ladder", "tools": [WEATHER],
                "messages": [{"role": "user", "content": "What's the weather in Paris?"}]})  # fmt: skip
            assert r.status_code == 200, r.text
            assert r.headers["x-modelladder-rung"] == "big"
            time.sleep(0.5)
            assert rec.spans == []  # nothing before the flush
        finally:
            proc.terminate()
            out = proc.communicate(timeout=30)[0]
        assert proc.returncode in (0, -15), out  # uvicorn re-raises SIGTERM after a graceful shutdown
        spans = rec.wait_for(3, timeout_s=10)
    assert "spans to OTLP" in out
    assert len(spans) == 3 and rec.content_types == {"application/x-protobuf"}
    run = next(s for s in spans if s.kind == 2)
    mini, big = sorted(
        (s for s in spans if s is not run), key=lambda s: s.attributes["modelladder.attempt.index"]
    )
    assert run.resource["service.name"] == "modelladder-test"
    assert run.scope == "modelladder.gateway"
    assert run.attributes["modelladder.run_id"] == r.headers["x-modelladder-run-id"]
    assert run.attributes["modelladder.escalations"] == [mini.attributes["modelladder.escalation_reason"]]
    assert (mini.name, big.name) == ("chat mini-1", "chat big-1")
    for span, sent, (price_in, price_out) in (
        (mini, up.requests[0], (1.0, 4.0)),
        (big, up.requests[1], (3.0, 15.0)),
    ):
        assert span.kind == 3 and span.parent_span_id == run.span_id and span.trace_id == run.trace_id
        assert span.attributes["gen_ai.request.model"] == sent["model"]
        assert span.attributes["server.port"] == up.server.server_address[1]
        tokens_in, tokens_out = 10 * len(sent["messages"]), 5  # what the upstream reported
        assert span.attributes["gen_ai.usage.input_tokens"] == tokens_in
        assert span.attributes["gen_ai.usage.output_tokens"] == tokens_out
        assert span.attributes["gen_ai.usage.cost"] == pytest.approx(
            (tokens_in * price_in + tokens_out * price_out) / 1e6
        )
    assert mini.attributes["modelladder.accepted"] is False and big.attributes["modelladder.accepted"] is True
    assert run.attributes["modelladder.cost_usd"] == pytest.approx(
        mini.attributes["gen_ai.usage.cost"] + big.attributes["gen_ai.usage.cost"]
    )
    assert run.start_ns <= mini.start_ns <= mini.end_ns <= big.start_ns <= big.end_ns <= run.end_ns


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(base: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("modelladder serve did not come up")


def test_tracing_off_never_imports_opentelemetry(tmp_path: Path) -> None:
    """Zero cost when not configured: a request through the gateway loads neither the SDK nor an
    exporter (the OpenTelemetry *API* is loaded by FastAPI itself, whose native telemetry
    creates non-recording spans without a configured provider)."""
    code = """
import sys, httpx
from tests.support.gateway import gateway, scripted, scripted_fleet
from modelladder.traces import TraceStore
store = TraceStore(sys.argv[1])
with gateway(scripted_fleet("tiny"), store, {"tiny": scripted("tiny")}) as srv:
    r = httpx.post(srv.base_url + "/v1/chat/completions", json={"model": "ladder", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
print(sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter",
                                                     "opentelemetry.proto", "modelladder.gateway.otel_spans"))))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "t.sqlite")], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_endpoint_comes_from_the_flag_or_the_standard_variables() -> None:
    assert otlp_endpoint(None, {}) is None
    assert otlp_endpoint("http://collector:4318/", {}) == "http://collector:4318/v1/traces"
    assert (
        otlp_endpoint(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == ""
    )  # the exporter reads it
    assert otlp_endpoint(None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c/v1/traces"}) == ""
    assert (
        otlp_endpoint(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"})
        is None
    )
    assert (
        otlp_endpoint(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"})
        is None
    )
    with pytest.raises(TelemetryConfigError, match="http/protobuf"):
        otlp_endpoint(
            None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        )
    with pytest.raises(TelemetryConfigError, match="not an http"):
        otlp_endpoint(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})


def test_serve_with_an_unusable_endpoint_exits_2_before_listening(tmp_path: Path) -> None:
    env = {**os.environ, "MODELLADDER_HOME": str(tmp_path), "PYTHONPATH": str(REPO / "src")}
    fleet = _fleet_file(tmp_path, "http://127.0.0.1:9/v1")
    out = subprocess.run([MODELLADDER, "serve", "--fleet", str(fleet), "--port",
                          str(_free_port()), "--otlp-endpoint", "grpc://collector:4317"],
                         env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "--otlp-endpoint 'grpc://collector:4317' is not an http(s) URL" in out.stderr
    assert "modelladder gateway on" not in out.stderr  # it never got as far as listening
