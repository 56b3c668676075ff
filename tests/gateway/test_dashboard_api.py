"""The dashboard's JSON API over a real store, filled through a real gateway and Ladder.

Numbers are asserted exactly against the traffic :func:`tests.support.dashboard.send_traffic`
sends (scripted rungs, two API keys), and tenant isolation both ways: another key's steps,
runs and prompts are absent, and its run ids answer 404 like unknown ones.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelladder.gateway.auth import UI_COOKIE
from modelladder.gateway.ui import stats
from modelladder.traces import TraceStore
from tests.support.dashboard import KEY_A, KEY_B, Traffic, backends, priced_fleet, send_traffic
from tests.support.gateway import gateway

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db = tmp_path_factory.mktemp("dash") / "traces.sqlite"
    with TraceStore(db) as store, gateway(priced_fleet(), store, backends(), api_keys=(KEY_A, KEY_B)) as srv:
        yield {"base": srv.base_url, "traffic": send_traffic(srv.base_url), "store": store, "db": db}


def _get(env: dict[str, Any], path: str, key: str | None = KEY_A, **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(env["base"] + path, headers=headers, timeout=10, **kw)


def _steps(env: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    r = _get(env, "/ui/api/steps", key)
    assert r.status_code == 200, r.text
    return {row["key"]: row for row in r.json()["data"]}


def test_step_figures_match_the_traffic(env: dict[str, Any]) -> None:
    steps = _steps(env, KEY_A)
    assert set(steps) == {"extract", "chat"}
    ex = steps["extract"]
    assert (ex["runs"], ex["resolved"], ex["edge_runs"]) == (9, 8, 6)
    assert ex["edge_share"] == pytest.approx(6 / 9)
    # tiny fails the contract on 5 runs, small on 3, big on 1; tiny times out on 2
    assert ex["escalations"] == {"contract:parse_error": 7, "backend:timeout": 2}
    assert ex["escalated_runs"] == 5
    # feedback: tiny run wrong, small run right, big run right then wrong (the newest counts)
    assert (ex["labelled"], ex["labelled_wrong"]) == (3, 2)
    assert ex["accepted_wrong"] == pytest.approx(2 / 3)
    lo, hi = ex["accepted_wrong_ci95"]
    assert lo < 2 / 3 < hi
    assert 0 < ex["latency_p50_s"] <= ex["latency_p95_s"]
    chat = steps["chat"]
    assert (chat["runs"], chat["edge_share"], chat["escalations"], chat["labelled"]) == (2, 1.0, {}, 0)
    assert chat["accepted_wrong"] is None


def test_frontier_only_cost(env: dict[str, Any]) -> None:
    """Runs that reached big are measured at their recorded cost there; the others are priced
    at big's list price (1000 $/M in, 4000 $/M out) on their own tokens."""
    store: TraceStore = env["store"]
    ex = _steps(env, KEY_A)["extract"]
    front = ex["frontier"]
    assert (front["rung"], front["source"], front["measured"], front["priced"], front["missing"]) == (
        "big", "fleet", 3, 6, 0,
    )  # fmt: skip
    expected = 0.0
    for run_id in env["traffic"].runs[KEY_A][:9]:
        run = store.get_run(run_id)
        on_big = [a for a in run.attempts if a.rung == "big"]
        answer = run.accepted or run.attempts[-1]
        expected += on_big[0].cost_usd if on_big else (10 * 1000 + answer.completion_tokens * 4000) / 1e6
    assert front["cost_usd"] == pytest.approx(expected)
    assert ex["cost_usd"] == pytest.approx(
        sum(store.get_run(r).cost_usd for r in env["traffic"].runs[KEY_A][:9])
    )
    assert ex["saving"] == pytest.approx(1 - ex["cost_usd"] / expected)


def test_step_page_data(env: dict[str, Any]) -> None:
    body = _get(env, "/ui/api/steps/extract").json()
    assert body["object"] == "step" and body["runs"] == 9
    series = body["edge_share_over_time"]
    assert sum(b["runs"] for b in series["buckets"]) == 9
    assert sum(b["edge_runs"] for b in series["buckets"]) == 6
    rungs = {r["rung"]: r for r in body["rungs"]}
    assert [r["rung"] for r in body["rungs"]] == ["tiny", "small", "big"]
    assert (rungs["tiny"]["attempts"], rungs["tiny"]["accepted"]) == (9, 4)
    assert (rungs["small"]["attempts"], rungs["small"]["accepted"]) == (5, 2)
    assert (rungs["big"]["attempts"], rungs["big"]["accepted"]) == (3, 2)
    assert {r["run_id"] for r in body["recent_runs"]} == set(env["traffic"].runs[KEY_A][:9])


def test_run_page_has_attempts_side_by_side(env: dict[str, Any]) -> None:
    traffic: Traffic = env["traffic"]
    run_id = traffic.by_kind[KEY_A, "big"][0]
    run = _get(env, f"/ui/api/runs/{run_id}").json()
    assert [(a["rung"], a["placement"], a["verdict"], a["escalation_reason"]) for a in run["attempts"]] == [
        ("tiny", "edge", "fail", "contract:parse_error"),
        ("small", "edge", "fail", "contract:parse_error"),
        ("big", "cloud", "pass", None),
    ]
    assert [a["text"] for a in run["attempts"]][:2] == ["nope", "nope"]
    assert run["label"]["wrong"] is True and len(run["labels"]) == 2
    assert run["cost_usd"] == pytest.approx(sum(a["cost_usd"] for a in run["attempts"]))


def test_tenants_see_only_their_own(env: dict[str, Any]) -> None:
    traffic: Traffic = env["traffic"]
    b_steps = _steps(env, KEY_B)
    assert set(b_steps) == {"extract"}
    assert (b_steps["extract"]["runs"], b_steps["extract"]["labelled_wrong"]) == (3, 1)
    assert _get(env, "/ui/api/steps/chat", KEY_B).status_code == 404  # A's step is not B's
    a_step = _get(env, "/ui/api/steps/extract", KEY_A).text
    b_run = traffic.runs[KEY_B][0]
    assert "tenant-b-secret-prompt" not in a_step and b_run not in a_step
    for path in (f"/ui/api/runs/{b_run}", f"/ui/runs/{b_run}"):
        r = _get(env, path, KEY_A)
        assert r.status_code == 404, r.text
        assert "tenant-b-secret-prompt" not in r.text
    assert _get(env, f"/ui/api/runs/{b_run}", KEY_B).json()["messages"][0]["content"].startswith("tenant-b")


def test_unknown_ids_and_missing_keys(env: dict[str, Any]) -> None:
    r = _get(env, "/ui/api/runs/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "run_not_found" and r.json()["error"]["type"] == "not_found_error"
    r = _get(env, "/ui/api/steps/no-such-step")
    assert r.status_code == 404 and r.json()["error"]["code"] == "step_not_found"
    page = _get(env, "/ui/runs/nope")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "Not found" in page.text
    assert _get(env, "/ui/api/steps", None).status_code == 401
    assert _get(env, "/ui/api/steps", "sk-wrong").status_code == 401
    r = _get(env, "/ui", None, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert _get(env, "/ui/static/dashboard.js", None).status_code == 200  # no data in it


def test_login_cookie(env: dict[str, Any]) -> None:
    with httpx.Client(base_url=env["base"], timeout=10) as client:
        assert client.post("/ui/login", data={"key": "sk-wrong"}).status_code == 401
        r = client.post("/ui/login", data={"key": KEY_B})
        assert r.status_code == 303 and r.headers["location"] == "/ui"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert set(_rows(client.get("/ui/api/steps"))) == {"extract"}
        assert client.get("/ui").status_code == 200
        # the cookie is for the dashboard only: /v1 still needs the header
        assert client.get("/v1/traces", headers={"cookie": f"{UI_COOKIE}={KEY_B}"}).status_code == 401


def _rows(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [row["key"] for row in r.json()["data"]]


def test_pure_figures() -> None:
    assert stats.wilson(0, 0) is None
    lo, hi = stats.wilson(2, 3) or (0, 0)
    assert lo == pytest.approx(0.2077, abs=1e-3) and hi == pytest.approx(0.9385, abs=1e-3)


def test_ui_command_rejects_a_store_it_cannot_open(tmp_path: Any) -> None:
    missing = tmp_path / "nope.sqlite"
    run = subprocess.run([sys.executable, "-c", "from modelladder.cli import main; main()", "ui", "--db", str(missing)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "cannot open the trace store" in run.stderr
    assert not missing.exists()
