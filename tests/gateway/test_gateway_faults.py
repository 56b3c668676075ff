"""A misbehaving upstream behind a cloud rung, through the real gateway on a real socket.

The fleet: ``flaky`` (the rung under test, ``timeout_s`` 0.5) and ``steady`` above it, both
real ``openai`` backends pointed at :mod:`tests.support.upstream`. For every fault the upstream
can commit, the caller gets the validated answer of the next rung or, with ``flaky`` alone,
one OpenAI-shaped error -- never flaky's output, never a hang -- and the trace of the attempt
names the fault. Then Retry-After (honoured, within the step's budget) and the cool-down of a
rung that keeps failing (visible in ``/metrics`` and ``healthz``, and over when it recovers).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelladder.fleet import Fleet, parse_fleet
from modelladder.traces import TraceStore
from tests.support.gateway import PERSON, WEATHER, gateway
from tests.support.upstream import Upstream, upstream

pytestmark = pytest.mark.server

# fault -> (the request kind it applies to, the error code the attempt's trace must hold, or
# the contract failure; the status the caller gets when flaky is the only rung)
FAULTS: dict[str, tuple[Any, str, str, int]] = {
    "slow": ({"slow": 3.0}, "text", "backend:timeout", 503),
    "429_retry_after": ({"status": 429, "retry_after": "1"}, "text", "backend:rate_limited", 429),
    "429_bare": ({"status": 429}, "text", "backend:rate_limited", 429),
    "500": ({"status": 500}, "text", "backend:server_error", 503),
    "503": ({"status": 503}, "text", "backend:server_error", 503),
    "reset_mid_body": ("reset", "text", "backend:unreachable", 503),
    "truncated_json": ("truncated", "text", "backend:bad_response", 503),
    "violates_contract": ("violate", "json", "contract:schema_violation", 422),
    "unknown_tool": ("unknown_tool", "tools", "contract:", 422),
    "50MB_body": ("huge", "text", "backend:bad_response", 503),
    "50MB_chunked": ("huge_chunked", "text", "backend:bad_response", 503),
    "endless_stream": ("endless", "text", "backend:bad_response", 503),
    "trickle_stream": ("trickle", "text", "backend:timeout", 503),
}
DEADLINE_S = 8.0  # no request may take longer: "never a hang"


def fleet_for(up: Upstream, **steps: dict[str, Any]) -> Fleet:
    return parse_fleet(
        {
            "rung": [
                {"name": "flaky", "backend": "openai", "url": up.base_url, "model": "flaky", "params": 1,
                 "placement": "cloud", "timeout_s": 0.5},
                {"name": "steady", "backend": "openai", "url": up.base_url, "model": "steady", "params": 2,
                 "placement": "cloud", "timeout_s": 5},
            ],
            "step": {"solo": {"max_rung": "flaky"}, **steps},
        },
        "<faults>",
    )  # fmt: skip


def body(kind: str, model: str = "ladder") -> dict[str, Any]:
    req: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Weather in Oslo?"}]}
    if kind == "json":
        req["response_format"] = {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}
    elif kind == "tools":
        req.update(tools=[WEATHER], tool_choice="required")
    return req


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with upstream() as up:
        store = TraceStore(tmp_path_factory.mktemp("faults") / "traces.sqlite")
        fleet = fleet_for(up, budgeted={"max_rung": "flaky", "latency_budget_s": 2.0})
        with (
            gateway(fleet, store, cooldown_after_failures=0) as srv,
            httpx.Client(base_url=srv.base_url, timeout=30) as http,
        ):
            yield {"up": up, "store": store, "http": http}
        store.close()


def post(env: dict[str, Any], req: dict[str, Any]) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    resp = env["http"].post("/v1/chat/completions", json=req)
    return resp, time.monotonic() - t0


def wait_out(env: dict[str, Any], rung: str = "flaky") -> None:
    """Let a Retry-After cool-down of an earlier test end."""
    deadline = time.monotonic() + 5
    while rung in env["http"].get("/healthz").json()["cooling"] and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_next_rung_answers(env: dict[str, Any], fault: str) -> None:
    behaviour, kind, trace, _ = FAULTS[fault]
    wait_out(env)
    env["up"].set("flaky", behaviour)
    resp, took = post(env, body(kind))
    assert took < DEADLINE_S
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["model"] == "steady" and resp.headers["x-modelladder-rung"] == "steady"
    message = out["choices"][0]["message"]
    if kind == "text":
        assert message["content"] == "ok from steady"
    elif kind == "json":
        assert json.loads(message["content"]) == {"name": "Bob", "age": 30}
    else:
        assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather"]
    run = env["store"].get_run(resp.headers["x-modelladder-run-id"])
    first, second = run.attempts
    assert (first.rung, first.accepted, second.rung, second.accepted) == ("flaky", False, "steady", True)
    assert first.escalation_reason is not None and first.escalation_reason.startswith(trace)
    if trace.startswith("backend:"):
        assert first.error == trace.removeprefix("backend:") and first.error_detail
        assert first.text == "" and first.value is None  # nothing of the fault's output is kept as an answer


@pytest.mark.parametrize("fault", list(FAULTS))
def test_alone_it_is_one_clear_error(env: dict[str, Any], fault: str) -> None:
    behaviour, kind, trace, status = FAULTS[fault]
    wait_out(env)
    env["up"].set("flaky", behaviour)
    resp, took = post(env, body(kind, model="flaky"))
    assert took < DEADLINE_S
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"] and err["code"]
    assert "choices" not in resp.json()
    run = env["store"].get_run(resp.headers["x-modelladder-run-id"])
    assert run.outcome == "unresolved" and run.attempts[0].escalation_reason.startswith(trace)


def test_retry_after_is_waited_out_when_it_fits(env: dict[str, Any]) -> None:
    wait_out(env)
    env["up"].set("flaky", {"status": 429, "retry_after": "1"}, "ok")
    before = len(env["up"].calls("flaky"))
    resp, took = post(env, body("text", model="ladder/solo"))
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "ok from flaky"
    calls = env["up"].calls("flaky")[before:]
    assert len(calls) == 2 and calls[1].at - calls[0].at >= 0.95  # not called again before Retry-After
    assert 0.95 <= took < 3
    run = env["store"].get_run(resp.headers["x-modelladder-run-id"])
    assert [(a.error, a.accepted) for a in run.attempts] == [("rate_limited", False), (None, True)]
    assert "Retry-After 1s" in run.attempts[0].error_detail


def test_retry_after_beyond_the_budget_is_a_prompt_429(env: dict[str, Any]) -> None:
    wait_out(env)
    env["up"].set("flaky", {"status": 429, "retry_after": "30"}, "ok")
    before = len(env["up"].calls("flaky"))
    resp, took = post(env, body("text", model="ladder/budgeted"))  # a 2 s budget
    assert resp.status_code == 429 and resp.headers["retry-after"] == "30"
    assert resp.json()["error"]["code"] == "upstream_rate_limited"
    assert took < 1.5  # it did not sit out 30 s, nor the whole budget
    # the next request within those 30 s does not reach the upstream at all
    again, took = post(env, body("text", model="ladder/budgeted"))
    assert again.status_code == 503 and 1 <= int(again.headers["retry-after"]) <= 30 and took < 1
    assert len(env["up"].calls("flaky")) - before == 1
    health = env["http"].get("/healthz").json()
    assert health["status"] == "degraded" and health["cooling"]["flaky"]["reason"] == "rate_limited"
    # ... while the ladder goes on to the next rung at once
    ok, _ = post(env, body("text"))
    assert (
        ok.status_code == 200
        and ok.json()["model"] == "steady"
        and ok.headers["x-modelladder-attempts"] == "1"
    )


def test_a_rung_that_keeps_failing_cools_down_and_comes_back(tmp_path: Any) -> None:
    with (
        upstream() as up,
        TraceStore(tmp_path / "t.sqlite") as store,
        gateway(fleet_for(up), store, cooldown_after_failures=3, cooldown_s=1.0) as srv,
        httpx.Client(base_url=srv.base_url, timeout=30) as http,
    ):
        up.set("flaky", {"status": 500})
        for _ in range(3):
            r = http.post("/v1/chat/completions", json=body("text"))
            assert r.status_code == 200 and r.headers["x-modelladder-attempts"] == "2"
        health = http.get("/healthz").json()
        assert health["status"] == "degraded"
        assert (
            health["cooling"]["flaky"]["reason"] == "server_error"
            and health["cooling"]["flaky"]["failures"] == 3
        )
        metrics = http.get("/metrics").text
        assert 'modelladder_rung_cooldowns_total{rung="flaky",reason="server_error"} 1' in metrics
        left = float(metrics.split('modelladder_rung_cooldown_seconds{rung="flaky"} ')[1].split()[0])
        assert 0 < left <= 1.0
        calls = len(up.calls("flaky"))
        r = http.post("/v1/chat/completions", json=body("text"))  # cooling: straight to steady
        assert r.status_code == 200 and r.headers["x-modelladder-attempts"] == "1"
        assert len(up.calls("flaky")) == calls
        up.set("flaky", "ok")  # the endpoint recovers
        time.sleep(1.05)
        r = http.post("/v1/chat/completions", json=body("text"))
        assert r.status_code == 200 and r.json()["model"] == "flaky"
        health = http.get("/healthz").json()
        assert health["status"] == "ok" and health["cooling"] == {}
        assert 'modelladder_rung_cooldown_seconds{rung="flaky"} 0' in http.get("/metrics").text
