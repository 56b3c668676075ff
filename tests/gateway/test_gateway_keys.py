"""Keys never leak, and tenants never see each other's runs: a real ``modelladder serve``
process with two API keys, whose cloud rungs carry their own upstream key (the upstream
is the loopback server of :mod:`tests.support.upstream`, which echoes that key back in its
errors, as careless servers do).

After answered requests, refused ones (a wrong key) and upstream faults, every byte of the
trace store (with its WAL), the gateway's log (uvicorn at debug, the OpenAI SDK's own debug
log on), ``/metrics``, ``/healthz`` and every response body is searched for each key: none
may be there. Then each key lists and reads only its own runs through ``/v1/traces``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelladder.gateway.auth import tenant_id
from tests.support.serve import GatewayProcess, write_fleet
from tests.support.upstream import Upstream, upstream

pytestmark = pytest.mark.server

KEY_A, KEY_B = "sk-tenant-a-" + secrets.token_hex(16), "sk-tenant-b-" + secrets.token_hex(16)
UPSTREAM_KEY = "sk-upstream-" + secrets.token_hex(16)
WRONG_KEY = "sk-wrong-" + secrets.token_hex(16)
KEYS = {"tenant A": KEY_A, "tenant B": KEY_B, "upstream": UPSTREAM_KEY, "wrong": WRONG_KEY}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("keys")
    with upstream() as up:
        fleet = write_fleet(tmp / "fleet.toml", up.base_url, steady_key_env="UPSTREAM_KEY")
        gw = GatewayProcess(
            fleet, tmp / "traces.sqlite", tmp / "gateway.log",
            env={"MODELLADDER_API_KEYS": f"{KEY_A},{KEY_B}", "UPSTREAM_KEY": UPSTREAM_KEY, "OPENAI_LOG": "debug"},
            args=("--log-level", "debug"),
        )  # fmt: skip
        with gw:
            bodies: list[str] = []
            yield {"up": up, "gw": gw, "tmp": tmp, "bodies": bodies, "runs": _traffic(gw, up, bodies)}


def _post(gw: GatewayProcess, key: str, content: str, bodies: list[str], **extra: Any) -> httpx.Response:
    r = httpx.post(gw.base_url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=10,
                   json={"model": "ladder", "messages": [{"role": "user", "content": content}], **extra})  # fmt: skip
    bodies.append(r.text + "\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items()))
    return r


def _traffic(gw: GatewayProcess, up: Upstream, bodies: list[str]) -> dict[str, list[str]]:
    """Answered requests for both tenants, through upstream faults that quote the key."""
    runs: dict[str, list[str]] = {KEY_A: [], KEY_B: []}
    up.set("flaky", {"echo_key": 401}, {"echo_key": 500}, "ok", {"echo_key": 400}, "ok")
    for i in range(6):
        key = KEY_A if i % 2 == 0 else KEY_B
        r = _post(gw, key, f"question {i} from {key[:11]}", bodies, metadata={"tenant": "key-forged"})
        assert r.status_code == 200, r.text
        runs[key].append(r.headers["x-modelladder-run-id"])
    up.set("flaky", {"echo_key": 401})
    up.set("steady", {"echo_key": 500})
    failed = _post(gw, KEY_A, "no rung can answer", bodies)
    assert failed.status_code == 503  # the echoed key must not be in this error either
    runs[KEY_A].append(failed.headers["x-modelladder-run-id"])
    up.set("flaky", "ok")
    up.set("steady", "ok")
    assert _post(gw, WRONG_KEY, "let me in", bodies).status_code == 401
    assert all(
        s.authorization == f"Bearer {UPSTREAM_KEY}" for s in up.seen
    )  # the rung's own key went upstream
    return runs


def test_no_key_in_the_store_the_logs_or_the_metrics(env: dict[str, Any]) -> None:
    gw: GatewayProcess = env["gw"]
    places: dict[str, bytes] = {}
    for f in sorted(env["tmp"].glob("traces.sqlite*")):
        places[f.name] = f.read_bytes()
    places["gateway log"] = Path(gw.log).read_bytes()
    places["/metrics"] = httpx.get(gw.base_url + "/metrics").content
    places["/healthz"] = httpx.get(gw.base_url + "/healthz").content
    places["responses"] = "\n".join(env["bodies"]).encode()
    assert len(places["traces.sqlite"]) > 0 and "traces.sqlite-wal" in places
    assert b"HTTP Request: POST" in places["gateway log"]  # the SDK's debug log is really on
    found = [
        (name, where) for name, key in KEYS.items() for where, data in places.items() if key.encode() in data
    ]
    assert found == []
    assert (
        b"[redacted]" in places["traces.sqlite"] + places["traces.sqlite-wal"]
    )  # the echo was scrubbed, not lost


def test_each_key_sees_only_its_own_runs(env: dict[str, Any]) -> None:
    gw: GatewayProcess = env["gw"]
    runs = env["runs"]
    for key, other in ((KEY_A, KEY_B), (KEY_B, KEY_A)):
        auth = {"authorization": f"Bearer {key}"}
        listed = httpx.get(gw.base_url + "/v1/traces", params={"limit": 200}, headers=auth).json()["data"]
        assert sorted(r["run_id"] for r in listed) == sorted(runs[key])
        assert {r["tags"]["tenant"] for r in listed} == {
            tenant_id(key)
        }  # the forged metadata tag was dropped
        mine = httpx.get(f"{gw.base_url}/v1/traces/{runs[key][0]}", headers=auth)
        assert mine.status_code == 200 and mine.json()["attempts"] and mine.json()["messages"]
        theirs = httpx.get(f"{gw.base_url}/v1/traces/{runs[other][0]}", headers=auth)
        assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "run_not_found"
        fb = httpx.post(
            gw.base_url + "/v1/feedback", headers=auth, json={"run_id": runs[other][0], "success": False}
        )
        assert fb.status_code == 404
        fb = httpx.post(
            gw.base_url + "/v1/feedback", headers=auth, json={"run_id": runs[key][0], "success": True}
        )
        assert fb.status_code == 200
    assert httpx.get(gw.base_url + "/v1/traces").status_code == 401
    assert (
        httpx.get(gw.base_url + "/v1/traces", headers={"authorization": f"Bearer {WRONG_KEY}"}).status_code
        == 401
    )
