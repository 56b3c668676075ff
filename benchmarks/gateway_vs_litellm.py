"""The gateway beside LiteLLM: added latency and sustained rate against the same instant mock.

Three processes on loopback: the instant mock OpenAI upstream (``tests/support/mock_openai.py``),
LiteLLM's proxy (``litellm --config``, a ``model_list`` of one ``openai/mock`` model at the
mock's ``api_base``, no database, no cache, no callbacks) and ``modelladder serve`` (a one-rung
fleet file: backend ``openai`` at the mock, ``api_key_env``; traces on, in a SQLite file, as a
user runs it). One load generator (httpx async, in this process) drives all three targets:
the mock directly, then each gateway, with the same request body.

* **Added latency** at 1, 16 and 64 concurrent clients (closed loop, keep-alive): the
  gateway's p50 (p99) minus the direct-to-mock p50 (p99) at the same concurrency. Requests
  cannot be paired one to one under concurrency, so percentiles are subtracted. Rounds are
  interleaved (direct, modelladder, litellm; the order rotates each round) and pooled.
* **Highest sustained rate** with p99 under ``--slo-ms`` (open loop: requests are sent on a
  fixed schedule and timed from their scheduled send, so a stalled server cannot hide its
  queue; a rate passes when every request answers 200, p99 < SLO and the schedule is kept).
  Rates double until one fails, then bisect.
* **CPU per request** of each gateway process (from /proc): on a small machine the CPU a
  request costs bounds the rate, and it is less sensitive to scheduling noise than latency.

The load generator, the mock and the gateway share the machine's CPUs (nothing is pinned);
each gateway runs as one process (uvicorn, one worker), as both start by default.

    .venv/bin/python benchmarks/gateway_vs_litellm.py --litellm /tmp/litellm-venv/bin/litellm
    # LiteLLM lives in its own venv: python3 -m venv /tmp/litellm-venv &&
    #   /tmp/litellm-venv/bin/pip install 'litellm[proxy]'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
INSTALL = "python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install 'litellm[proxy]'"
KEY = "sk-" + "5e1f" * 16  # both gateways require it (LiteLLM refuses to start without a master key)
HEADERS = {"authorization": f"Bearer {KEY}"}
MESSAGES = [{"role": "user", "content": "What's the weather in Paris?"}]


# the test suite's mock (TCP_NODELAY and a 1024-connection backlog are set there)
MOCK = (
    "import sys; from tests.support.mock_openai import _Handler, _Server; "
    "_Server(('127.0.0.1', int(sys.argv[1])), _Handler).serve_forever()"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))] if s else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants (Linux; 0 elsewhere)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


@dataclass
class Target:
    name: str
    url: str  # base URL ending in /v1
    model: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    lat: dict[int, list[float]] = field(default_factory=dict)  # concurrency -> latencies (ms)
    rps: dict[int, list[float]] = field(default_factory=dict)  # concurrency -> achieved req/s per round
    errors: dict[int, int] = field(default_factory=dict)
    cpu_ms: dict[int, list[float]] = field(default_factory=dict)  # server CPU ms per request
    rate: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"model": self.model, "messages": MESSAGES, "max_tokens": 16}


def start(name: str, argv: list[str], url: str, model: str, tmp: Path, env: dict[str, str]) -> Target:
    log = tmp / f"{name}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    t = Target(name, url, model, proc, log)
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"{name} exited with {proc.returncode} before answering; its log ends:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.post(url + "/chat/completions", json=t.body(), headers=HEADERS, timeout=5)
            if r.status_code == 200:
                return t
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} did not answer a chat completion within 120 s (log: {log})")
        time.sleep(0.3)


def stop(t: Target) -> None:
    if t.proc and t.proc.poll() is None:
        t.proc.terminate()
        try:
            t.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            t.proc.kill()
            t.proc.wait()


def client(conns: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    return httpx.AsyncClient(limits=limits, timeout=30, headers=HEADERS)


async def timed_post(http: httpx.AsyncClient, url: str, body: dict[str, Any], since: float) -> float | None:
    """One chat completion: milliseconds from ``since`` to its 200 answer, or ``None`` (an error)."""
    try:
        r = await http.post(url + "/chat/completions", json=body)
    except httpx.HTTPError:
        return None
    return (time.perf_counter() - since) * 1e3 if r.status_code == 200 else None


async def closed_loop(t: Target, conc: int, seconds: float) -> tuple[list[float], int, float, int]:
    """``conc`` clients, each sending its next request when the last answers: latencies, errors, wall, n."""
    lat: list[float] = []
    errors = 0
    body = t.body()
    async with client(conc) as http:
        # open the connections first: a connect is not what is measured
        await asyncio.gather(
            *(http.post(t.url + "/chat/completions", json=body) for _ in range(conc)), return_exceptions=True
        )
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                ms = await timed_post(http, t.url, body, time.perf_counter())
                if ms is None:
                    errors += 1
                else:
                    lat.append(ms)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - t0
    return lat, errors, wall, len(lat) + errors


async def open_loop(t: Target, rate: float, seconds: float, max_conns: int) -> dict[str, Any]:
    """Requests on a fixed schedule at ``rate``/s for ``seconds``, each timed from its scheduled send."""
    n = max(1, int(rate * seconds))
    lat: list[float] = []
    errors = 0
    body = t.body()
    async with client(max_conns) as http:
        await asyncio.gather(
            *(http.post(t.url + "/chat/completions", json=body) for _ in range(min(32, max_conns)))
        )
        t0 = time.perf_counter() + 0.05
        late = 0

        async def one(i: int) -> None:
            nonlocal errors
            ms = await timed_post(http, t.url, body, t0 + i / rate)  # timed from its scheduled send
            if ms is None:
                errors += 1
            else:
                lat.append(ms)

        tasks = []
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.01:
                late += 1  # the generator itself fell behind the schedule
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.wait(tasks, timeout=30)
        for task in tasks:
            task.cancel()
    p99 = pct(lat, 99)
    return {"rate": rate, "n": n, "ok": len(lat), "errors": errors, "p50_ms": pct(lat, 50), "p99_ms": p99,
            "generator_late": late}  # fmt: skip


async def max_rate(t: Target, args: argparse.Namespace) -> dict[str, Any]:
    """The highest rate (req/s) at which every request answers and p99 < SLO."""
    tried: list[dict[str, Any]] = []

    async def passes(rate: float) -> bool:
        res = await open_loop(t, rate, args.rate_seconds, args.max_conns)
        res["pass"] = res["errors"] == 0 and res["ok"] == res["n"] and res["p99_ms"] < args.slo_ms
        tried.append(res)
        print(f"    {t.name:22s} {rate:7.0f} req/s: p50 {res['p50_ms']:7.2f} ms  p99 {res['p99_ms']:8.2f} ms  "
              f"errors {res['errors']}  {'pass' if res['pass'] else 'FAIL'}", flush=True)  # fmt: skip
        await asyncio.sleep(1.0)  # let a backlog drain before the next rate
        return bool(res["pass"])

    lo, hi = 0.0, 0.0
    rate = args.rate_start
    while rate <= args.rate_max:
        if await passes(rate):
            lo = rate
            rate *= 2
        else:
            hi = rate
            break
    if hi:
        for _ in range(args.bisect):
            mid = round((lo + hi) / 2, -1) if lo else hi / 2
            if mid in (lo, hi):
                break
            if await passes(mid):
                lo = mid
            else:
                hi = mid
    return {"max_rate": lo, "first_fail": hi or None, "tried": tried}


def machine() -> str:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}"


def litellm_version(exe: Path) -> str:
    py = exe.parent / "python"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [str(py), "-c", "from importlib.metadata import version as v; print(v('litellm'), v('uvicorn'))"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if out.returncode == 0:
            lv, uv = out.stdout.split()
            return f"litellm {lv} (uvicorn {uv})"
    return "litellm (version unknown)"


def parse_concurrency(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not values or any(v < 1 or v > 1024 for v in values):
        raise argparse.ArgumentTypeError(f"concurrency must be 1..1024: {text!r}")
    return values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--litellm", type=Path, default=Path(shutil.which("litellm") or "litellm"),
                    help="LiteLLM's proxy executable (default: `litellm` on PATH)")  # fmt: skip
    ap.add_argument("--concurrency", type=parse_concurrency, default=[1, 16, 64], help="e.g. 1,16,64")
    ap.add_argument("--seconds", type=float, default=4.0, help="per closed-loop measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per concurrency")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per target")
    ap.add_argument("--slo-ms", type=float, default=50.0, help="p99 bound for the sustained rate")
    ap.add_argument("--rate-start", type=float, default=100.0)
    ap.add_argument("--rate-max", type=float, default=6400.0)
    ap.add_argument("--rate-seconds", type=float, default=4.0, help="per rate tried")
    ap.add_argument("--bisect", type=int, default=3)
    ap.add_argument("--max-conns", type=int, default=256, help="client connections in the rate search")
    ap.add_argument("--memory-traces", action="store_true", help="also run modelladder with traces in memory")
    ap.add_argument("--no-rate", action="store_true", help="skip the sustained-rate search")
    ap.add_argument("--json", type=Path, help="also write the figures here as JSON")
    ap.add_argument("--no-litellm", action="store_true", help="modelladder only (and the direct baseline)")
    ap.add_argument("--also-src", action="append", default=[], metavar="NAME=DIR",
                    help="also run modelladder from another source tree (its src/ folder), interleaved"
                    " with this one: a before/after comparison, e.g. before=/tmp/ml-before/src")  # fmt: skip
    args = ap.parse_args()
    exe = args.litellm
    extra_src: list[tuple[str, Path]] = []
    for item in args.also_src:
        name, sep, where = item.partition("=")
        if not sep or not name or not (Path(where) / "modelladder").is_dir():
            print(
                f"error: --also-src takes NAME=DIR, DIR holding the modelladder package: {item!r}",
                file=sys.stderr,
            )
            sys.exit(2)
        extra_src.append((name, Path(where).resolve()))
    if not args.no_litellm and not (exe.is_file() and os.access(exe, os.X_OK)):
        print(f"error: LiteLLM's proxy not found at {exe}; install it in its own venv: {INSTALL} "
              f"and pass --litellm /tmp/litellm-venv/bin/litellm", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    if args.seconds <= 0 or args.rounds < 1 or args.rate_seconds <= 0 or args.slo_ms <= 0:
        print("error: --seconds, --rounds, --rate-seconds and --slo-ms must be positive", file=sys.stderr)
        sys.exit(2)

    tmp = Path(tempfile.mkdtemp(prefix="ml-vs-litellm-"))
    env = {**os.environ, "MOCK_API_KEY": "sk-mock", "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    for var in (
        "MODELLADDER_TRACES",
        "MODELLADDER_FLEET",
        "MODELLADDER_API_KEYS",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ):
        env.pop(var, None)
    targets: list[Target] = []
    load_before = os.getloadavg()[0]
    try:
        mport = free_port()
        mock = start("direct (mock)", [sys.executable, "-c", MOCK, str(mport)],
                     f"http://127.0.0.1:{mport}/v1", "mock", tmp, env)  # fmt: skip
        targets.append(mock)
        fleet = tmp / "fleet.toml"
        fleet.write_text(
            f'[[rung]]\nname = "mock"\nbackend = "openai"\nurl = "{mock.url}"\nmodel = "mock"\n'
            'api_key_env = "MOCK_API_KEY"\nparams = 1\nplacement = "cloud"\n'
        )
        keys = tmp / "keys.txt"
        keys.write_text(KEY + "\n")
        stores = [("modelladder", str(tmp / "traces.sqlite"))]
        if args.memory_traces:
            stores.append(("modelladder (mem traces)", ":memory:"))
        runs = [(name, db, env) for name, db in stores]
        for label, src in extra_src:  # the same gateway from another source tree (the same venv)
            other = {**env, "PYTHONPATH": os.pathsep.join([str(src), env["PYTHONPATH"]])}
            runs.append((f"modelladder ({label})", str(tmp / f"traces-{label}.sqlite"), other))
        for name, db, run_env in runs:
            port = free_port()
            argv = [sys.executable, "-c", "from modelladder.cli import main; main()", "serve", "--port", str(port), "--fleet", str(fleet),
                    "--db", db, "--api-key-file", str(keys), "--max-queue", "1024", "--no-preload", "--log-level", "warning"]  # fmt: skip
            targets.append(start(name, argv, f"http://127.0.0.1:{port}/v1", "ladder", tmp, run_env))
        cfg = tmp / "litellm.yaml"
        cfg.write_text(
            "model_list:\n  - model_name: mock\n    litellm_params:\n      model: openai/mock\n"
            f"      api_base: {mock.url}\n      api_key: sk-mock\n"
            f"general_settings:\n  master_key: {KEY}\n"
            "litellm_settings:\n  cache: false\n  telemetry: false\n  set_verbose: false\n"
        )
        lport = free_port()
        if not args.no_litellm:
            targets.append(start("litellm", [str(exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(lport),
                                             "--num_workers", "1"],
                                 f"http://127.0.0.1:{lport}/v1", "mock", tmp, env))  # fmt: skip
        sdk = upstream_sdk_cost(mock)
        asyncio.run(measure(targets, args))
    finally:
        for t in targets:
            stop(t)
    report(targets, args, exe, load_before, sdk)


def upstream_sdk_cost(mock: Target, n: int = 500) -> dict[str, float]:
    """What the gateway's upstream hop alone costs: the openai SDK (as the ``openai`` backend uses it),
    serial, in this process, to the mock: wall and client CPU per call."""
    from openai import OpenAI

    oai = OpenAI(base_url=mock.url, api_key="sk-mock", max_retries=0)

    def call() -> None:
        oai.chat.completions.create(model="mock", messages=MESSAGES, max_tokens=16)  # type: ignore[arg-type]

    for _ in range(50):
        call()
    wall: list[float] = []
    c0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        wall.append((time.perf_counter() - t0) * 1e3)
    cpu = (time.process_time() - c0) / n * 1e3
    return {
        "p50_ms": round(pct(wall, 50), 3),
        "p99_ms": round(pct(wall, 99), 3),
        "client_cpu_ms": round(cpu, 3),
    }


async def measure(targets: list[Target], args: argparse.Namespace) -> None:
    for t in targets:
        print(f"warm-up {t.name} ...", flush=True)
        await closed_loop(t, 16, args.warmup)
    for conc in args.concurrency:
        for rnd in range(args.rounds):
            order = targets[rnd % len(targets) :] + targets[: rnd % len(targets)]
            for t in order:
                c0 = cpu_seconds(t.proc.pid) if t.proc else 0.0
                lat, errors, wall, n = await closed_loop(t, conc, args.seconds)
                cpu = (cpu_seconds(t.proc.pid) if t.proc else 0.0) - c0
                t.lat.setdefault(conc, []).extend(lat)
                t.rps.setdefault(conc, []).append(n / wall)
                t.errors[conc] = t.errors.get(conc, 0) + errors
                t.cpu_ms.setdefault(conc, []).append(cpu / max(1, n) * 1e3)
                print(f"  c={conc:3d} round {rnd + 1}: {t.name:24s} p50 {pct(lat, 50):7.2f} ms  p99 {pct(lat, 99):7.2f} ms"
                      f"  {n / wall:7.0f} req/s  errors {errors}", flush=True)  # fmt: skip
    if not args.no_rate:
        print(f"sustained rate with p99 < {args.slo_ms:g} ms (open loop, {args.rate_seconds:g} s per rate):")
        for t in targets:
            t.rate = await max_rate(t, args)


def report(
    targets: list[Target], args: argparse.Namespace, exe: Path, load_before: float, sdk: dict[str, float]
) -> None:
    direct = targets[0]
    out: dict[str, Any] = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "versions": f"{'litellm not run' if args.no_litellm else litellm_version(exe)}; modelladder: fastapi {version('fastapi')}, uvicorn {version('uvicorn')},"
        f" httpx {version('httpx')}",
        "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "concurrency": {},
        "upstream_sdk_serial": sdk,
    }
    print(f"\ncommand : {out['command']}\nmachine : {out['machine']}\nversions: {out['versions']}")
    print(f"load    : 1-min load average {out['loadavg_1m'][0]} before, {out['loadavg_1m'][1]} after")
    print(f"upstream hop alone (openai SDK, serial, in the client process): p50 {sdk['p50_ms']:.2f} ms, "
          f"p99 {sdk['p99_ms']:.2f} ms, {sdk['client_cpu_ms']:.2f} ms CPU per call")  # fmt: skip
    for conc in args.concurrency:
        d50, d99 = pct(direct.lat[conc], 50), pct(direct.lat[conc], 99)
        rows = {}
        print(f"\n{conc} concurrent clients (direct to mock: p50 {d50:.2f} ms, p99 {d99:.2f} ms)")
        print(f"  {'target':24s} {'p50':>8s} {'p99':>8s} {'added p50':>10s} {'added p99':>10s} {'req/s':>7s}"
              f" {'CPU ms/req':>10s} {'errors':>6s}")  # fmt: skip
        for t in targets:
            lat = t.lat[conc]
            row = {"p50_ms": round(pct(lat, 50), 3), "p99_ms": round(pct(lat, 99), 3),
                   "added_p50_ms": round(pct(lat, 50) - d50, 3), "added_p99_ms": round(pct(lat, 99) - d99, 3),
                   "req_per_s": round(sum(t.rps[conc]) / len(t.rps[conc]), 1),
                   "server_cpu_ms_per_req": round(sum(t.cpu_ms[conc]) / len(t.cpu_ms[conc]), 3),
                   "errors": t.errors[conc], "samples": len(lat)}  # fmt: skip
            rows[t.name] = row
            print(f"  {t.name:24s} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['added_p50_ms']:10.2f}"
                  f" {row['added_p99_ms']:10.2f} {row['req_per_s']:7.0f} {row['server_cpu_ms_per_req']:10.3f}"
                  f" {row['errors']:6d}")  # fmt: skip
        out["concurrency"][str(conc)] = rows
    if not args.no_rate:
        out["max_rate"] = {t.name: t.rate for t in targets}
        print(f"\nhighest sustained rate with p99 < {args.slo_ms:g} ms:")
        for t in targets:
            print(
                f"  {t.name:24s} {t.rate['max_rate']:7.0f} req/s (first failing rate: {t.rate['first_fail']})"
            )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
