"""Several real ``modelladder serve`` processes on one PostgreSQL store, and the clients that
load them the way a load balancer would spread them.

Each client thread has a home replica and keeps one HTTP connection to it; after every answer
it sends ``/v1/feedback`` for that run to *another* replica (the service is one service, not
four). A request that could not connect (a replica that is gone) is sent to the next live one,
as a load balancer would; a request that was sent and got no answer is *lost in flight*: it is
counted against that replica and not retried (a chat completion is not idempotent).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.gateway import WEATHER
from tests.support.models import free_port

__all__ = ["LoadResult", "Replica", "fleet_file", "run_load", "start_replicas"]


def fleet_file(path: Path, upstream: str) -> Path:
    """Two cloud rungs on the mock upstream: answers cost no model, escalation still exists."""
    path.write_text(
        "".join(
            f'[[rung]]\nname = "{name}"\nbackend = "openai"\nurl = "{upstream}"\nmodel = "mock-{name}"\n'
            f'params = {params}\nplacement = "cloud"\n\n'
            for name, params in (("small", 1), ("big", 9))
        )
    )
    return path


@dataclass
class Replica:
    index: int
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, in-flight requests and transactions are cut."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def _serve_cmd(fleet: Path, db: str, port: int) -> list[str]:
    return [sys.executable, "-c", "from modelladder.cli import main; main()", "serve", "--fleet", str(fleet),
            "--db", db, "--port", str(port), "--no-preload", "--max-queue", "64", "--log-level", "warning"]  # fmt: skip


@contextlib.contextmanager
def start_replicas(n: int, fleet: Path, db: str, logs: Path) -> Iterator[list[Replica]]:
    """``n`` serve processes, all on ``db``; returns once every one answers ``/healthz``."""
    replicas: list[Replica] = []
    try:
        for i in range(n):
            port, log = free_port(), logs / f"replica-{i}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(_serve_cmd(fleet, db, port), stdout=out, stderr=subprocess.STDOUT)
            replicas.append(Replica(i, port, proc, log))
        deadline = time.monotonic() + 90
        for r in replicas:
            while True:
                if r.proc.poll() is not None:
                    raise RuntimeError(
                        f"replica {r.index} exited with {r.proc.returncode}:\n{r.log.read_text()[-2000:]}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{r.base}/healthz", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"replica {r.index} did not start in 90 s:\n{r.log.read_text()[-2000:]}"
                    )
                time.sleep(0.2)
        yield replicas
    finally:
        for r in replicas:
            if r.proc.poll() is None:
                r.proc.terminate()
        for r in replicas:
            try:
                r.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                r.proc.kill()


@dataclass
class LoadResult:
    answered: dict[str, tuple[int, str]] = field(default_factory=dict)  # run id -> (replica, what it said)
    feedback: dict[str, bool] = field(default_factory=dict)  # run id -> success, acknowledged
    feedback_unacked: int = 0  # feedback sent and cut off (may or may not have landed)
    lost: Counter[int] = field(default_factory=Counter)  # per replica: sent, never answered
    refused: Counter[int] = field(default_factory=Counter)  # per replica: could not connect (resent)
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    def percentile(self, q: float) -> float:
        xs = sorted(self.latencies_s)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


class _Client:
    def __init__(self, home: int, replicas: list[Replica], result: LoadResult, lock: threading.Lock) -> None:
        self.home, self.replicas, self.result, self.lock = home, replicas, result, lock
        self.dead: set[int] = set()
        self.http: dict[int, httpx.Client] = {}

    def _client(self, i: int) -> httpx.Client:
        if i not in self.http:
            self.http[i] = httpx.Client(base_url=self.replicas[i].base, timeout=30)
        return self.http[i]

    def _live(self, start: int) -> Iterator[int]:
        n = len(self.replicas)
        yield from (j % n for j in range(start, start + n) if j % n not in self.dead)

    def _post(self, start: int, path: str, body: dict[str, Any]) -> tuple[int, httpx.Response | None]:
        """POST to the first live replica from ``start``; resend only what never connected."""
        for i in self._live(start):
            try:
                return i, self._client(i).post(path, json=body)
            except httpx.ConnectError:
                self.dead.add(i)
                with self.lock:
                    self.result.refused[i] += 1
            except httpx.TransportError:  # sent, then cut off: lost in flight
                self.dead.add(i)
                return i, None
        return -1, None

    def request(self, k: int) -> None:
        prompt = f"client {self.home} request {k}"
        body: dict[str, Any] = {"model": "ladder", "max_tokens": 16,
                                "messages": [{"role": "user", "content": prompt}]}  # fmt: skip
        if k % 4 == 3:
            body["tools"] = [WEATHER]
        t0 = time.perf_counter()
        i, resp = self._post(self.home % len(self.replicas), "/v1/chat/completions", body)
        took = time.perf_counter() - t0
        with self.lock:
            if resp is None:
                if i >= 0:
                    self.result.lost[i] += 1
                else:
                    self.result.problems.append(f"{prompt}: no replica left")
                return
            self.result.statuses[resp.status_code] += 1
        if resp.status_code == 429:
            time.sleep(0.05)
            return
        if resp.status_code != 200:
            with self.lock:
                self.result.problems.append(f"{prompt}: HTTP {resp.status_code} {resp.text[:200]}")
            return
        msg = resp.json()["choices"][0]["message"]
        said = json.dumps(msg["tool_calls"][0]["function"]) if msg.get("tool_calls") else msg["content"]
        expected = "get_weather" if "tools" in body else f"echo {prompt}"
        run_id = resp.json()["id"].removeprefix("chatcmpl-")
        with self.lock:
            self.result.latencies_s.append(took)
            self.result.answered[run_id] = (i, said)
            if expected not in said:
                self.result.problems.append(f"{prompt}: answered {said!r}")
        success = k % 3 != 0
        j, fb = self._post(i + 1, "/v1/feedback", {"run_id": run_id, "success": success})
        with self.lock:
            if fb is not None and fb.status_code == 200:
                self.result.feedback[run_id] = success
            elif fb is None:
                self.result.feedback_unacked += 1
            else:
                self.result.problems.append(f"feedback {run_id}: HTTP {fb.status_code} {fb.text[:200]}")

    def close(self) -> None:
        for c in self.http.values():
            c.close()


def run_load(
    replicas: list[Replica], clients_per_replica: int, requests_per_client: int, *, deadline_s: float,
    kill_after: int | None = None,
) -> LoadResult:  # fmt: skip
    """Run the load; with ``kill_after``, SIGKILL replica 0 once that many requests are answered."""
    result, lock = LoadResult(), threading.Lock()
    stop_at = time.monotonic() + deadline_s

    def worker(home: int) -> None:
        client = _Client(home, replicas, result, lock)
        try:
            for k in range(requests_per_client):
                if time.monotonic() > stop_at:
                    return
                client.request(k)
        except Exception as exc:  # pragma: no cover - reported by the test
            with lock:
                result.problems.append(f"client {home}: {type(exc).__name__}: {exc}")
        finally:
            client.close()

    def killer() -> None:
        while time.monotonic() < stop_at:
            with lock:
                done = len(result.answered)
            if kill_after is not None and done >= kill_after:
                replicas[0].kill()
                return
            time.sleep(0.005)

    threads = [threading.Thread(target=worker, args=(h,)) for h in range(len(replicas) * clients_per_replica)]
    if kill_after is not None:
        threads.append(threading.Thread(target=killer))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, stop_at - time.monotonic() + 35))
    result.elapsed_s = time.perf_counter() - t0
    if any(t.is_alive() for t in threads):
        result.problems.append("a client hung past the deadline")
    return result
