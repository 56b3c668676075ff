"""Shared pieces of the dashboard tests: a fleet with a priced cloud rung, traffic for two
tenants sent through a real gateway (the real Ladder over scripted rungs, a real trace store),
and a headless Chromium to look at the pages.

Why through the gateway rather than writing records: the dashboard's figures are only right if
they agree with what the ladder and the gateway actually record (tenant tags, escalation
reasons, feedback labels), so the tests make those records the way production does.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from modelladder.contracts import JsonSchema
from modelladder.fleet import Fleet, parse_fleet
from modelladder.gateway.auth import tenant_id
from modelladder.ladder import Ladder, Step
from modelladder.traces import TraceStore
from tests.support.gateway import PERSON, directive, scripted

KEY_A, KEY_B = "sk-dash-tenant-a-0123456789", "sk-dash-tenant-b-9876543210"


def priced_fleet() -> Fleet:
    """Two edge rungs priced per second and a cloud rung priced per token (the frontier)."""
    return parse_fleet(
        {
            "rung": [
                {"name": "tiny", "backend": "openai", "url": "http://127.0.0.1:9/v1", "params": 100,
                 "placement": "edge", "price_per_second": 0.5},
                {"name": "small", "backend": "openai", "url": "http://127.0.0.1:9/v1", "params": 200,
                 "placement": "edge", "price_per_second": 1.0},
                {"name": "big", "backend": "openai", "url": "http://127.0.0.1:9/v1", "params": 10_000,
                 "placement": "cloud", "price_in_per_m": 1000.0, "price_out_per_m": 4000.0},
            ],
            "step": {"extract": {}, "chat": {}},
        },
        "<dashboard>",
    )  # fmt: skip


def backends() -> dict[str, Any]:
    return {name: scripted(name) for name in ("tiny", "small", "big")}


@dataclass
class Traffic:
    """What was sent, per tenant key: run ids by how they ended."""

    runs: dict[str, list[str]] = field(default_factory=dict)
    by_kind: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, key: str, kind: str, run_id: str) -> None:
        self.runs.setdefault(key, []).append(run_id)
        self.by_kind.setdefault((key, kind), []).append(run_id)


def _chat(base: str, key: str, model: str, content: str, json_schema: bool = True) -> httpx.Response:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}]}
    if json_schema:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    return httpx.post(base + "/v1/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {key}"})  # fmt: skip


def _feedback(base: str, key: str, run_id: str, success: bool) -> None:
    r = httpx.post(base + "/v1/feedback", json={"run_id": run_id, "success": success}, timeout=10,
                   headers={"authorization": f"Bearer {key}"})  # fmt: skip
    assert r.status_code == 200, r.text


def send_traffic(base: str) -> Traffic:
    """Tenant A, step ``extract``: 4 runs on tiny, 2 escalated to small (tiny's answer is not
    times out), 2 escalated to big (both edge rungs fail), 1 unresolved (every rung fails); feedback
    says 2 of 3 labelled answers were wrong. Tenant A, step ``chat``: 2 free-text runs on tiny.
    Tenant B, step ``extract``: 3 runs on tiny with a secret in the prompt, 1 labelled wrong."""
    t = Traffic()
    plan = [("tiny", {}, 4), ("small", {"tiny": {"error": "timeout"}}, 2), ("big", {"tiny": "nope", "small": "nope"}, 2),
            ("unresolved", {"default": "nope"}, 1)]  # fmt: skip
    i = 0
    for kind, script, n in plan:
        for _ in range(n):
            i += 1
            r = _chat(base, KEY_A, "ladder/extract", (directive(**script) if script else "") + f" person {i}")
            assert r.status_code == (422 if kind == "unresolved" else 200), r.text
            t.add(KEY_A, kind, r.headers["x-modelladder-run-id"])
    for j in range(2):
        r = _chat(base, KEY_A, "ladder/chat", f"hello {j}", json_schema=False)
        assert r.status_code == 200, r.text
        t.add(KEY_A, "chat", r.headers["x-modelladder-run-id"])
    for j in range(3):
        r = _chat(base, KEY_B, "ladder/extract", f"tenant-b-secret-prompt {j}")
        assert r.status_code == 200, r.text
        t.add(KEY_B, "b", r.headers["x-modelladder-run-id"])
    a_tiny, a_small, a_big = t.by_kind[KEY_A, "tiny"], t.by_kind[KEY_A, "small"], t.by_kind[KEY_A, "big"]
    _feedback(base, KEY_A, a_tiny[0], False)
    _feedback(base, KEY_A, a_small[0], True)
    _feedback(base, KEY_A, a_big[0], True)
    _feedback(base, KEY_A, a_big[0], False)  # the newest label is in force: wrong
    _feedback(base, KEY_B, t.by_kind[KEY_B, "b"][0], False)
    return t


def record_history(store: TraceStore, hours: int = 24) -> int:
    """Tenant A's step ``triage`` over the past ``hours``: the real Ladder over the scripted
    rungs, each result recorded an hour apart (the gateway stamps runs with the current time, so
    a history has to be written with ``created_at``). Early on most runs escalate, later the
    edge answers more of them: the shape edge share over time takes as a gate learns."""
    ladder = Ladder(priced_fleet(), backends=backends())
    step = Step("triage", contract=JsonSchema(PERSON))
    start = datetime.now(UTC) - timedelta(hours=hours)
    n = 0
    for h in range(hours):
        for k in range(4):
            failing = k < max(0, 3 - h // 6)  # 3, 2, 1, 0 failing runs per hour, every 6 hours
            script = {"tiny": "nope", "small": {"error": "timeout"}} if failing else {}
            text = (directive(**script) if script else "") + f" triage {h}.{k}"
            result = ladder.run(step, [{"role": "user", "content": text}], tags={"tenant": tenant_id(KEY_A)})
            store.record(result, created_at=start + timedelta(hours=h, minutes=10 * k))
            n += 1
    return n


def browser_flags(profile: Path, size: str = "1280,1800") -> list[str]:
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
        f"--user-data-dir={profile}", f"--window-size={size}",
    ]  # fmt: skip


def dump_dom(exe: str, url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran (virtual time lets fetches and rendering finish)."""
    out = subprocess.run([exe, *browser_flags(profile), "--virtual-time-budget=10000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def screenshot(exe: str, url: str, shot: Path, profile: Path, size: str = "1280,1800") -> Path:
    out = subprocess.run([exe, *browser_flags(profile, size), "--virtual-time-budget=10000",
                          f"--screenshot={shot}", url], capture_output=True, timeout=120)  # fmt: skip
    assert out.returncode == 0 and shot.exists(), out.stderr[-2000:]
    return shot
