"""Gateway overhead: the latency the HTTP gateway adds over calling the ladder in-process.

A rung that answers instantly (no model) isolates the gateway's own cost: HTTP parsing,
request validation, contract derivation, the queue, the worker-thread hop, response
shaping, the client's HTTP round trip. Both paths write the same trace store, so trace
writes cancel out. The gateway runs in a separate process (as in production: the client
does not share its interpreter), on loopback, and the client keeps its connection alive.

Each sample pairs one in-process ``Ladder.run`` with one HTTP request, back to back, and
the overhead is their difference; p50/p99 are over those differences.

    .venv/bin/python benchmarks/gateway_overhead.py            # ~20 s
    .venv/bin/python benchmarks/gateway_overhead.py --n 5000 --client openai
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

from modelladder.backends.base import Generation, GenerationParams
from modelladder.fleet import Fleet, parse_fleet
from modelladder.ladder import Ladder, Step
from modelladder.traces import TraceStore

MESSAGES = [{"role": "user", "content": "What's the weather in Paris?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
ANSWER = '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</tool_call>'


class InstantBackend:
    """Answers the canonical tool call at once: the ladder and gateway are all that is timed."""

    name = "instant"

    def generate(self, messages: Any, contract: Any, params: GenerationParams) -> Generation:
        return Generation(text=ANSWER, prompt_tokens=12, completion_tokens=8, latency_s=0.0)


def fleet() -> Fleet:
    rung = {"name": "instant", "backend": "openai", "url": "http://127.0.0.1:9/v1", "params": 1}
    return parse_fleet({"rung": [rung]}, "<benchmark>")


def serve(port: int, db: str) -> None:
    """The gateway process."""
    import uvicorn

    from modelladder.gateway import GatewayConfig, create_app

    app = create_app(
        fleet(), TraceStore(db), config=GatewayConfig(api_keys=()), backends={"instant": InstantBackend()}
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}; "
        f"fastapi {version('fastapi')}, uvicorn {version('uvicorn')}, httpx {version('httpx')}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="paired samples")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--client", choices=["httpx", "openai"], default="httpx")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.db)
        return

    load_before = os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="ml-bench-")
    db = os.path.join(tmp, "traces.sqlite")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # separate files: two processes appending to one SQLite file would slow both down
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--db", db + ".gateway"])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the gateway did not start") from None
                time.sleep(0.1)

        store = TraceStore(db)
        ladder = Ladder(fleet(), store=store, backends={"instant": InstantBackend()})
        from modelladder.contracts import ToolCalls

        body = {
            "model": "ladder",
            "messages": MESSAGES,
            "tools": TOOLS,
            "tool_choice": "required",
            "max_tokens": 64,
        }
        if args.client == "openai":
            from openai import OpenAI

            oai = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)

            def http_call() -> None:
                oai.chat.completions.create(**body)  # type: ignore[call-overload]
        else:
            client = httpx.Client(base_url=base)

            def http_call() -> None:
                r = client.post("/v1/chat/completions", json=body)
                r.raise_for_status()

        # in-process code declares its step once and reuses it (the gateway caches contracts)
        step = Step("default", ToolCalls(TOOLS, tool_choice="required"), max_tokens=64)

        def inproc_call() -> None:
            res = ladder.run(step, MESSAGES, params=GenerationParams(max_tokens=64))
            assert res.outcome == "resolved"

        for _ in range(args.warmup):
            inproc_call()
            http_call()
        inproc, http, diff = [], [], []
        cpu_inproc = cpu_http = 0.0
        server_cpu0 = _cpu_seconds(proc.pid)
        t_start = time.perf_counter()
        for _ in range(args.n):
            c0, t0 = time.process_time(), time.perf_counter()
            inproc_call()
            c1, t1 = time.process_time(), time.perf_counter()
            http_call()
            c2, t2 = time.process_time(), time.perf_counter()
            inproc.append((t1 - t0) * 1e3)
            http.append((t2 - t1) * 1e3)
            diff.append((t2 - t1 - (t1 - t0)) * 1e3)
            cpu_inproc += c1 - c0
            cpu_http += c2 - c1
        wall = time.perf_counter() - t_start
        server_cpu = _cpu_seconds(proc.pid) - server_cpu0
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    figures = {
        "overhead_p50_ms": round(pct(diff, 50), 3),
        "overhead_p99_ms": round(pct(diff, 99), 3),
        "overhead_mean_ms": round(statistics.fmean(diff), 3),
        "inprocess_p50_ms": round(pct(inproc, 50), 3),
        "inprocess_p99_ms": round(pct(inproc, 99), 3),
        "gateway_p50_ms": round(pct(http, 50), 3),
        "gateway_p99_ms": round(pct(http, 99), 3),
        "samples": args.n,
        "client": args.client,
        "wall_s": round(wall, 1),
        "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        # CPU time (less sensitive to other load than latency, not immune): the server process plus the
        # client's HTTP work, minus the in-process run, per request
        "overhead_cpu_ms": round((server_cpu + cpu_http - cpu_inproc) / args.n * 1e3, 3),
    }
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    if args.json:
        print(json.dumps({**figures, "machine": machine(), "command": command}))
        return
    print(f"command : {command}")
    print(f"machine : {machine()}")
    print(
        f"load    : 1-min load average {figures['loadavg_1m'][0]} before, {figures['loadavg_1m'][1]} after "
        f"(other processes compete for the {os.cpu_count()} CPUs; figures are only comparable on a quiet machine)"
    )
    print(f"samples : {args.n} paired (after {args.warmup} warm-up), client {args.client}, {wall:.1f} s")
    print(
        f"in-process ladder.run : p50 {figures['inprocess_p50_ms']:.3f} ms   p99 {figures['inprocess_p99_ms']:.3f} ms"
    )
    print(
        f"through the gateway   : p50 {figures['gateway_p50_ms']:.3f} ms   p99 {figures['gateway_p99_ms']:.3f} ms"
    )
    print(
        f"gateway overhead      : p50 {figures['overhead_p50_ms']:.3f} ms   p99 {figures['overhead_p99_ms']:.3f} ms"
        f"   (target: p50 <= 2 ms, p99 <= 10 ms)"
    )
    print(
        f"gateway CPU cost      : {figures['overhead_cpu_ms']:.3f} ms per request (server + client HTTP work)"
    )


if __name__ == "__main__":
    main()
