"""Each upstream fault, many times: the figures of docs/reliability.md's fault table.

The same setup as tests/gateway/test_gateway_faults.py (the loopback misbehaving upstream,
real ``openai`` backends, the real gateway on a socket; no model), each fault repeated
``--n`` times twice: with a rung to escalate to (``ladder``) and alone (``flaky``). Every
response is classed: ``answered`` (200 with the next rung's validated answer), ``clean error``
(an OpenAI-shaped error body, status 4xx/5xx), or ``lost`` (anything else: a 200 carrying the
faulty rung's output, a body that is not the error shape, a request over 8 s). Run from the
repository root::

    PYTHONPATH=src:. .venv/bin/python benchmarks/reliability_faults.py --n 10
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx

from modelladder.traces import TraceStore
from tests.gateway.test_gateway_faults import DEADLINE_S, FAULTS, body, fleet_for
from tests.support.gateway import gateway
from tests.support.upstream import Upstream, upstream


def measure(http: httpx.Client, up: Upstream, fault: str, n: int) -> tuple[str, int, int, int, int, float]:
    """``fault`` ``n`` times with a rung to escalate to and ``n`` times alone."""
    behaviour, kind, _, _ = FAULTS[fault]
    tally: Counter[str] = Counter()
    slowest = 0.0
    for model in ("ladder", "flaky"):
        for _ in range(n):
            while "flaky" in http.get("/healthz").json()["cooling"]:  # a Retry-After of the last one
                time.sleep(0.05)
            up.set("flaky", behaviour)
            t0 = time.monotonic()
            r = http.post("/v1/chat/completions", json=body(kind, model))
            took = time.monotonic() - t0
            slowest = max(slowest, took)
            out = r.json()
            if took > DEADLINE_S:
                tally["lost"] += 1
            elif r.status_code == 200 and out.get("model") == "steady":
                tally["answered"] += 1
            elif r.status_code >= 400 and set(out.get("error", {})) == {"message", "type", "param", "code"}:
                tally["clean error"] += 1
            else:
                tally["lost"] += 1
    return fault, 2 * n, tally["answered"], tally["clean error"], tally["lost"], slowest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10, help="repetitions of each fault, each way")
    args = ap.parse_args()
    with (
        upstream() as up,
        TemporaryDirectory() as tmp,
        TraceStore(Path(tmp) / "t.sqlite") as store,
        gateway(fleet_for(up), store, cooldown_after_failures=0) as srv,
        httpx.Client(base_url=srv.base_url, timeout=30) as http,
    ):
        rows = [measure(http, up, fault, args.n) for fault in FAULTS]
    print("| fault | requests | answered | clean error | lost | slowest |")
    print("|---|---:|---:|---:|---:|---:|")
    for fault, n, a, e, lost, slow in rows:
        print(f"| {fault} | {n} | {a} | {e} | {lost} | {slow:.2f} s |")
    total = [sum(r[i] for r in rows) for i in range(1, 5)]
    print(f"| **all** | {total[0]} | {total[1]} | {total[2]} | {total[3]} | |")
    print(json.dumps({"n": args.n, "requests": total[0], "lost": total[3]}))


if __name__ == "__main__":
    main()
