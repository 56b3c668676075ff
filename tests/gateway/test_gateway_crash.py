"""SIGKILL during load, then restart, 20 times: a real ``modelladder serve`` process, a real
SQLite trace store, cloud rungs against the loopback upstream (no model loads).

The first start is a cold ``modelladder serve``, the second a cold ``uvicorn --factory``; the
other 18 fork the same ``modelladder serve`` command line from a process that has already
imported the package (:mod:`tests.support.zygote`: a cold start is mostly imports, and CI time
is bounded). After each kill, before the restart: the store passes ``PRAGMA integrity_check`` and
``foreign_key_check``; every request that got a 200 has its run, with as many attempts as
its ``x-modelladder-attempts`` header said; no run is half-written (attempts numbered 0..n-1,
a resolved run's last attempt and only it accepted). After the restart the first request is
answered. Why this holds: a run and its attempts are one transaction written before the
response is sent, and SQLite's WAL survives the death of the process (not of the machine:
``synchronous = NORMAL`` may drop the last transactions on power loss; see docs/reliability.md).
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import WEATHER
from tests.support.serve import GatewayProcess, Zygote, write_fleet
from tests.support.upstream import upstream

pytestmark = pytest.mark.server

CYCLES, CLIENTS = 20, 4


def _load(base: str, stop: threading.Event, answered: list[tuple[str, int]], tally: Counter[str], lock: threading.Lock,
          seed: int) -> None:  # fmt: skip
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=5) as http:
        while not stop.is_set():
            req: dict[str, Any] = {
                "model": "ladder",
                "messages": [{"role": "user", "content": f"q{rng.random()}"}],
            }
            if rng.random() < 0.3:
                req.update(tools=[WEATHER], tool_choice="required")
            try:
                r = http.post("/v1/chat/completions", json=req)
            except httpx.ConnectError:
                with lock:
                    tally["refused"] += 1  # the gateway is dead already
                return
            except httpx.HTTPError:
                with lock:
                    tally["cut"] += 1  # the gateway died under this request
                return
            with lock:
                tally[str(r.status_code)] += 1
                if r.status_code == 200:
                    answered.append(
                        (r.headers["x-modelladder-run-id"], int(r.headers["x-modelladder-attempts"]))
                    )


def check_store(db: Path, answered: list[tuple[str, int]]) -> int:
    """The store as the kill left it; returns the number of runs in it."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        runs = {r[0]: r[1] for r in conn.execute("SELECT run_id, outcome FROM runs")}
        attempts: dict[str, list[tuple[int, int]]] = {}
        for run_id, idx, accepted in conn.execute(
            "SELECT run_id, idx, accepted FROM attempts ORDER BY run_id, idx"
        ):
            attempts.setdefault(run_id, []).append((idx, accepted))
    finally:
        conn.close()
    assert set(attempts) <= set(runs), "attempts without their run"
    for run_id, outcome in runs.items():
        rows = attempts.get(run_id, [])
        assert [i for i, _ in rows] == list(range(len(rows))), f"run {run_id}: attempts {rows}"
        if outcome == "resolved":
            assert rows and [a for _, a in rows] == [0] * (len(rows) - 1) + [1], f"run {run_id}: {rows}"
    for run_id, n in answered:
        assert run_id in runs, f"run {run_id} was answered but is not in the store"
        assert len(attempts[run_id]) == n and runs[run_id] == "resolved"
    return len(runs)


def test_sigkill_under_load_then_restart(tmp_path: Path) -> None:
    rng = random.Random(17)
    db = tmp_path / "traces.sqlite"
    answered: list[tuple[str, int]] = []
    tally: Counter[str] = Counter()
    lock = threading.Lock()
    cold: list[float] = []
    warm: list[float] = []
    t0 = time.monotonic()
    zygote = Zygote()
    with upstream() as up:
        up.set(
            "flaky", "ok", {"status": 500}, "ok", "reset", "ok", {"status": 503}, "ok", "ok", {"status": 500}
        )
        gw = GatewayProcess(write_fleet(tmp_path / "fleet.toml", up.base_url), db, tmp_path / "gateway.log")
        first_cold: list[float] = []
        first_warm: list[float] = []
        for cycle in range(CYCLES):
            if cycle < 2:  # both ways a deployment starts it, cold
                gw.start(launcher="serve" if cycle == 0 else "uvicorn")
                cold.append(gw.ready_s)
            else:
                gw.start(zygote=zygote)
                warm.append(gw.ready_s)
            t = time.monotonic()
            first = httpx.post(gw.base_url + "/v1/chat/completions", timeout=5,
                               json={"model": "ladder", "messages": [{"role": "user", "content": "first"}]})  # fmt: skip
            assert first.status_code == 200, f"cycle {cycle}: the restarted gateway refused: {first.text}"
            answered.append(
                (first.headers["x-modelladder-run-id"], int(first.headers["x-modelladder-attempts"]))
            )
            (first_cold if cycle < 2 else first_warm).append(time.monotonic() - t)
            stop = threading.Event()
            clients = [threading.Thread(target=_load, args=(gw.base_url, stop, answered, tally, lock, cycle * 10 + i))
                       for i in range(CLIENTS)]  # fmt: skip
            for c in clients:
                c.start()
            time.sleep(rng.uniform(0.1, 0.35))
            gw.kill()  # mid-load: requests are in flight
            stop.set()
            for c in clients:
                c.join(timeout=10)
            assert not any(c.is_alive() for c in clients), "a client hung on a dead gateway"
            with lock:
                n_runs = check_store(db, list(answered))
    zygote.close()
    elapsed = time.monotonic() - t0
    print(f"\ncrash-restart: {CYCLES} SIGKILLs, {len(answered)} answered, {dict(tally)}, {n_runs} runs stored; "
          f"restart to healthz: cold {', '.join(f'{t:.2f}' for t in cold)}s, forked max {max(warm):.2f}s "
          f"median {sorted(warm)[len(warm) // 2]:.2f}s; first answer after it: cold "
          f"{', '.join(f'{t:.2f}' for t in first_cold)}s, forked max {max(first_warm):.2f}s; {elapsed:.1f}s in all")  # fmt: skip
    assert tally["cut"] >= CYCLES, "some kill found no request in flight: it killed an idle gateway"
    assert set(tally) <= {"200", "cut", "refused"}, tally
    assert (
        len(answered) >= CYCLES * 2
    )  # the first request of each cycle, and load on top (a busy box answers fewer)
    assert max(first_warm) < 5 and max(first_cold) < 10  # "serves at once", with room for a loaded CI box
