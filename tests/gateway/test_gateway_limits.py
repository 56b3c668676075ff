"""Queueing, cancellation, authentication and size limits of the gateway, on a real socket."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import Any

import httpx
import pytest

from modelladder.gateway import GatewayConfig, create_app
from modelladder.gateway.queueing import QueueFull, QueueTimeout, RungQueue, acquire
from modelladder.traces import TraceStore
from tests.support.gateway import gateway, scripted, scripted_fleet

pytestmark = pytest.mark.server

BODY = {"model": "ladder", "messages": [{"role": "user", "content": "hi"}]}


def test_full_queue_answers_429_with_retry_after(tmp_path: Any) -> None:
    store = TraceStore(tmp_path / "t.sqlite")
    slow = scripted("tiny", delay_s=0.4)
    with gateway(scripted_fleet("tiny"), store, {"tiny": slow}, max_waiting=1, remote_concurrency=1) as srv:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            resps = list(pool.map(lambda _: httpx.post(srv.base_url + "/v1/chat/completions", json=BODY, timeout=30),
                                  range(6)))  # fmt: skip
        statuses = sorted(r.status_code for r in resps)
        assert statuses.count(200) >= 2 and statuses.count(429) >= 1 and set(statuses) <= {200, 429}
        for r in resps:
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                assert (
                    r.json()["error"]["code"] == "queue_full"
                    and "queue full" in r.json()["error"]["message"]
                    and r.json()["error"]["type"] == "rate_limit_error"
                )
        assert store.count_runs() == statuses.count(200) == len(slow.calls)
        metrics = httpx.get(srv.base_url + "/metrics").text
        assert (
            f'modelladder_queue_rejections_total{{queue="tiny",reason="full"}} {statuses.count(429)}'
            in metrics
        )


def test_queue_wait_is_bounded(tmp_path: Any) -> None:
    store = TraceStore(tmp_path / "t.sqlite")
    slow = {"tiny": scripted("tiny", delay_s=1.0)}
    with gateway(scripted_fleet("tiny"), store, slow, remote_concurrency=1, queue_timeout_s=0.2) as srv:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(httpx.post, srv.base_url + "/v1/chat/completions", json=BODY, timeout=30)
            time.sleep(0.2)
            t0 = time.perf_counter()
            second = httpx.post(srv.base_url + "/v1/chat/completions", json=BODY, timeout=30)
            waited = time.perf_counter() - t0
            assert first.result().status_code == 200
        assert second.status_code == 429 and second.json()["error"]["code"] == "queue_timeout"
        assert "wait-for-slot timeout" in second.json()["error"]["message"]
        assert waited < 0.9 and "retry-after" in second.headers


def test_latency_budget_bounds_the_queue_wait(tmp_path: Any) -> None:
    store = TraceStore(tmp_path / "t.sqlite")
    fleet = scripted_fleet("tiny", steps={"quick": {"latency_budget_s": 0.2}})
    with gateway(fleet, store, {"tiny": scripted("tiny", delay_s=1.0)}, remote_concurrency=1) as srv:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(httpx.post, srv.base_url + "/v1/chat/completions", json=BODY, timeout=30)
            time.sleep(0.2)
            second = httpx.post(srv.base_url + "/v1/chat/completions", json={**BODY, "model": "ladder/quick"})
            assert first.result().status_code == 200
        assert second.status_code == 429 and second.json()["error"]["code"] == "queue_timeout"
        assert "wait-for-slot timeout" in second.json()["error"]["message"]


def test_disconnect_cancels_queued_work(tmp_path: Any) -> None:
    store = TraceStore(tmp_path / "t.sqlite")
    slow = scripted("tiny", delay_s=1.0)
    with gateway(scripted_fleet("tiny"), store, {"tiny": slow}, remote_concurrency=1) as srv:
        url = srv.base_url + "/v1/chat/completions"
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(httpx.post, url, json=BODY, timeout=30)
            time.sleep(0.2)
            with pytest.raises(httpx.ReadTimeout):  # gives up while queued behind the first
                httpx.post(url, json=BODY, timeout=httpx.Timeout(30, read=0.3))
            assert first.result().status_code == 200
        time.sleep(0.3)
        assert len(slow.calls) == 1 and store.count_runs() == 1  # the abandoned request never ran
        metrics = httpx.get(srv.base_url + "/metrics").text
        assert 'modelladder_queue_cancelled_total{queue="tiny"} 1' in metrics
        assert 'modelladder_queue_depth{queue="tiny"} 0' in metrics


def test_queue_hands_slots_over_in_order() -> None:
    async def scenario() -> None:
        q = RungQueue("q", concurrency=1, max_waiting=2)
        assert await acquire(q, 1.0, None)
        order: list[int] = []

        async def waiter(i: int) -> None:
            assert await acquire(q, 5.0, None)
            order.append(i)
            q.release(0.01)

        tasks = [asyncio.create_task(waiter(i)) for i in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            q.enqueue()
        q.release(0.01)
        await asyncio.gather(*tasks)
        assert order == [0, 1] and q.running == 0 and q.waiting == 0
        assert await acquire(q, 1.0, None)
        with pytest.raises(QueueTimeout):
            await acquire(q, 0.01, None)
        assert q.waiting == 0 and q.running == 1

    asyncio.run(scenario())


def test_the_resident_conversation_goes_first_but_nobody_is_passed_more_than_max_bypass() -> None:
    async def scenario() -> None:
        q = RungQueue("q", concurrency=1, max_waiting=10, max_bypass=2)
        assert await acquire(q, 1.0, None, "A")  # conversation A holds the model
        order: list[str] = []

        async def waiter(key: str, tag: str) -> None:
            assert await acquire(q, 5.0, None, key)
            order.append(tag)
            await asyncio.sleep(0)
            q.release(0.01)

        # B waits first, then four more hops of A arrive behind it
        tasks = [asyncio.create_task(waiter("B", "B1"))]
        await asyncio.sleep(0.001)
        tasks += [asyncio.create_task(waiter("A", f"A{i}")) for i in range(2, 6)]
        await asyncio.sleep(0.001)
        q.release(0.01)
        await asyncio.gather(*tasks)
        # A goes first twice (B passed over twice, the bound), then B, then the rest of A
        assert order == ["A2", "A3", "B1", "A4", "A5"]
        assert q.preferred == 2 and q.running == 0 and q.waiting == 0

    asyncio.run(scenario())


def test_without_keys_the_queue_is_fifo() -> None:
    async def scenario() -> None:
        q = RungQueue("q", concurrency=1, max_waiting=10)
        assert await acquire(q, 1.0, None)
        order: list[int] = []

        async def waiter(i: int) -> None:
            assert await acquire(q, 5.0, None)
            order.append(i)
            q.release(0.01)

        tasks = []
        for i in range(4):
            tasks.append(asyncio.create_task(waiter(i)))
            await asyncio.sleep(0.001)
        q.release(0.01)
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2, 3] and q.preferred == 0

    asyncio.run(scenario())


# -- authentication and limits -----------------------------------------------------------------

KEY = "sk-test-0123456789abcdef"


def test_api_keys(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = TraceStore(tmp_path / "t.sqlite")
    fleet = scripted_fleet("tiny")
    with gateway(fleet, store, {"tiny": scripted("tiny")}, api_keys=(KEY, "sk-other")) as srv:
        url = srv.base_url + "/v1/chat/completions"
        missing = httpx.post(url, json=BODY)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
        wrong = httpx.post(url, json=BODY, headers={"authorization": "Bearer sk-wrong"})
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
        assert "sk-wrong" not in wrong.text
        ok = httpx.post(url, json={**BODY, "user": "alice"}, headers={"authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200
        assert httpx.get(srv.base_url + "/v1/models").status_code == 401
        assert httpx.get(srv.base_url + "/healthz").status_code == 200
    store.close()
    assert KEY not in caplog.text
    assert KEY.encode() not in (tmp_path / "t.sqlite").read_bytes()
    wal = tmp_path / "t.sqlite-wal"
    assert not wal.exists() or KEY.encode() not in wal.read_bytes()


def test_key_file_and_env(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelladder.gateway.auth import load_api_keys

    f = tmp_path / "keys"
    f.write_text("# team keys\nsk-a\n\n  sk-b  \n")
    f.chmod(0o600)
    monkeypatch.setenv("MODELLADDER_API_KEYS", "sk-c, sk-a")
    assert load_api_keys(f) == ("sk-c", "sk-a", "sk-b")
    monkeypatch.setenv("MODELLADDER_API_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="cannot read the API key file"):
        load_api_keys()


def test_no_key_means_loopback_clients_only(tmp_path: Any) -> None:
    app = create_app(scripted_fleet("tiny"), TraceStore(tmp_path / "t.sqlite"), config=GatewayConfig(api_keys=()),
                     backends={"tiny": scripted("tiny")})  # fmt: skip

    async def call(client_host: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client_host, 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            return await c.get("/v1/models")

    remote = asyncio.run(call("10.1.2.3"))
    assert remote.status_code == 403 and remote.json()["error"]["code"] == "loopback_only"
    assert asyncio.run(call("127.0.0.1")).status_code == 200
    assert asyncio.run(call("::1")).status_code == 200


def test_request_size_limit(tmp_path: Any) -> None:
    store = TraceStore(tmp_path / "t.sqlite")
    with gateway(scripted_fleet("tiny"), store, {"tiny": scripted("tiny")}, max_body_bytes=2048) as srv:
        url = srv.base_url + "/v1/chat/completions"
        big = {"model": "ladder", "messages": [{"role": "user", "content": "x" * 5000}]}
        r = httpx.post(url, json=big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

        def chunks() -> Any:  # no Content-Length: counted as it arrives
            yield b'{"model": "ladder", "messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}]}'

        r = httpx.post(url, content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        assert httpx.post(url, json=BODY).status_code == 200
        assert store.count_runs() == 1


def test_serve_refuses_public_bind_without_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from click.testing import CliRunner

    import modelladder.cli.serve_cmd  # noqa: F401  (registers the command)
    from modelladder.cli import main
    from modelladder.gateway.server import BindError, check_bind

    monkeypatch.delenv("MODELLADDER_API_KEYS", raising=False)
    monkeypatch.delenv("MODELLADDER_API_KEY_FILE", raising=False)
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "no API key is configured" in result.output
    with pytest.raises(BindError):
        check_bind("192.168.1.5", has_keys=False)
    assert "loopback" in check_bind("127.0.0.1", has_keys=False)
    assert "API keys configured" in check_bind("0.0.0.0", has_keys=True)
    bad = CliRunner().invoke(main, ["serve", "--api-key-file", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "cannot read the API key file" in bad.output
    bad = CliRunner().invoke(main, ["serve", "--fleet", str(tmp_path / "nope.toml")])
    assert bad.exit_code == 2 and "fleet file not found" in bad.output


def test_factory_defaults_for_any_asgi_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """``uvicorn --factory modelladder.gateway:create_app``: fleet, store and keys from the environment."""
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        '[[rung]]\nname = "far"\nbackend = "openai"\nurl = "http://127.0.0.1:9/v1"\nparams = 5\n'
    )
    monkeypatch.setenv("MODELLADDER_FLEET", str(fleet))
    monkeypatch.setenv("MODELLADDER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELLADDER_API_KEYS", KEY)
    app = create_app()

    async def call() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            return await c.get("/v1/models"), await c.get(
                "/v1/models", headers={"authorization": f"Bearer {KEY}"}
            )

    denied, ok = asyncio.run(call())
    assert denied.status_code == 401 and ok.status_code == 200
    assert [m["id"] for m in ok.json()["data"]] == ["ladder", "far"]
    assert (tmp_path / "home" / "traces.sqlite").exists()
