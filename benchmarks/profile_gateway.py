"""Where the gateway's CPU goes: ``modelladder serve`` under load, profiled, by layer.

Starts what ``benchmarks/gateway_vs_litellm.py`` starts (the instant mock upstream and
``modelladder serve`` over a one-rung ``openai`` fleet at the mock, SQLite traces, an API key),
warms it up, then drives ``--clients`` closed-loop clients at it for ``--seconds`` while three
recorders watch the gateway process:

* **/proc** per-thread user and system CPU: the exact total, split between the event-loop
  thread (uvicorn, FastAPI, our handler) and the worker threads (the ladder, the upstream call,
  the trace write).
* **perf** (``perf record -a -e cpu-clock -g``, kept to the gateway's pid): on-CPU samples only,
  so it splits that total truthfully into kernel time by system call (socket I/O, futex, epoll,
  file I/O), the SQLite library, and user-space Python (interpreter plus C extensions). Python
  3.11 has no perf trampoline, so perf cannot name Python functions.
* **py-spy** (``record --gil --nonblocking --format raw``): the Python stacks of the thread
  holding the GIL, which names the layer of every user-space sample.

Why not py-spy alone: on this 2-core machine, saturated by the load, py-spy's idle filter
(the kernel's "runnable" state) counted threads waiting for a core or for the GIL as busy, 2.4x
the CPU that /proc reported, mostly at blocking calls; its blocking mode also slowed the gateway
3x. With ``--gil`` it samples the Python work, but misses what runs without the GIL (system
calls, SQLite's engine) and still counts a GIL holder the kernel has preempted.

The breakdown adds up to 100 % of the gateway's CPU: perf's kernel and SQLite buckets are
given to their layer (socket I/O on the event-loop thread to the HTTP server, on worker threads
to the upstream call; file I/O and the SQLite library to the trace store; futex to the thread
hop), and perf's user-space share is split in py-spy's proportions. A py-spy sample is given to
the innermost frame of a layer (uvicorn/h11, FastAPI/Starlette, our modules, the openai SDK,
httpx/httpcore, the trace store, anyio, asyncio, logging, metrics, otel); generic helpers
(json, pydantic, typing, dataclasses, copy, ...) count for the layer that called them, so
"openai SDK" includes the pydantic models it builds and "FastAPI" the request-body validation.
GIL samples at a lock release (``Condition.notify``: a futex wake, or preempted there) are left
to perf's futex bucket. A second view ("by leaf") gives py-spy's self time by library.

py-spy is a standalone binary; keep it in its own venv. perf must be allowed to sample the
whole system (root, or ``kernel.perf_event_paranoid`` <= 0); without it (``--no-perf``) only the
py-spy view is given, which is not a CPU breakdown::

    python3 -m venv /tmp/pyspy-venv && /tmp/pyspy-venv/bin/pip install py-spy
    nice -n 19 .venv/bin/python benchmarks/profile_gateway.py --py-spy /tmp/pyspy-venv/bin/py-spy \\
        --seconds 20 --rate 200 --out /tmp/gw-profile
    # fold the saved recordings again (after changing the rules below) without running anything:
    .venv/bin/python benchmarks/profile_gateway.py --refold /tmp/gw-profile
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway_vs_litellm as gvl  # noqa: E402  -- the same processes and load generator

# py-spy frames, "function (path:line)": (layer, pattern on "path (function)"); leaf to root,
# the first frame that matches any pattern decides. Library paths are site-packages relative.
LAYERS: list[tuple[str, re.Pattern[str]]] = [
    ("trace store", re.compile(r"modelladder/traces/|(^|/)sqlite3/")),
    ("metrics, health", re.compile(r"modelladder/gateway/(metrics|health)\.py")),
    ("otel", re.compile(r"modelladder/gateway/otel|(^|/)opentelemetry/")),
    ("logging", re.compile(r"(^|/)logging/")),
    ("openai SDK", re.compile(r"(^|/)openai/")),
    ("httpx/httpcore (upstream client)", re.compile(r"(^|/)(httpx2?|httpcore)/")),
    ("backend adapter (openai_compat, http_guard)", re.compile(r"modelladder/backends/")),
    ("contracts", re.compile(r"modelladder/(contracts/|fleet_contracts)")),
    ("learning (gate, skip)", re.compile(r"modelladder/learning/")),
    ("ladder (runner, policy, outcome)", re.compile(r"modelladder/ladder/")),
    ("response building (shaping)", re.compile(r"modelladder/gateway/shaping\.py")),
    ("translate/plan", re.compile(r"modelladder/gateway/translate\.py")),
    ("gateway handler (app, queueing, auth)", re.compile(r"modelladder/gateway/")),
    ("other modelladder", re.compile(r"modelladder/")),
    (
        "anyio / worker-thread hop",
        re.compile(r"(^|/)anyio/|(^|/)concurrent/futures/|^threading\.py|^queue\.py"),
    ),
    ("FastAPI/Starlette (routing, validation)", re.compile(r"(^|/)(fastapi|starlette)/")),
    ("uvicorn (HTTP server, h11)", re.compile(r"(^|/)uvicorn/")),
    ("asyncio event loop", re.compile(r"(^|/)asyncio/|^selectors\.py")),
]
LEAVES: list[tuple[str, re.Pattern[str]]] = [
    ("json", re.compile(r"(^|/)json/")),
    ("pydantic", re.compile(r"(^|/)pydantic(_core)?/")),
    ("sqlite3 (our store module)", re.compile(r"(^|/)sqlite3/|modelladder/traces/")),
    ("logging", re.compile(r"(^|/)logging/")),
    (
        "typing, dataclasses, copy, enum, uuid",
        re.compile(r"^(typing|typing_extensions|dataclasses|copy|enum|uuid)\.py"),
    ),
    ("h11", re.compile(r"(^|/)h11/")),
    ("httpx/httpcore", re.compile(r"(^|/)(httpx2?|httpcore)/")),
    ("openai SDK", re.compile(r"(^|/)openai/")),
    ("threading, queue (lock release)", re.compile(r"^(threading|queue)\.py")),
    ("anyio", re.compile(r"(^|/)anyio/")),
    ("asyncio, selectors", re.compile(r"(^|/)asyncio/|^selectors\.py")),
    ("uvicorn", re.compile(r"(^|/)uvicorn/")),
    ("fastapi/starlette", re.compile(r"(^|/)(fastapi|starlette)/")),
    ("modelladder", re.compile(r"modelladder/")),
]
# a GIL sample here is the kernel's futex wake (or a preemption there): perf counts it
SYSCALL_WITH_GIL = re.compile(r"^threading\.py \(Condition\.notify\)")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# perf: a kernel sample's system call (the chain's __x64_sys_*) -> bucket
SYSCALLS = {
    "sendto": "socket", "recvfrom": "socket", "sendmsg": "socket", "recvmsg": "socket",
    "futex": "futex", "epoll_wait": "epoll", "epoll_ctl": "epoll", "poll": "epoll", "select": "epoll",
    "pselect6": "epoll", "ppoll": "epoll", "pwrite64": "file", "pread64": "file", "fsync": "file",
    "fdatasync": "file", "openat": "file", "close": "file", "fcntl": "file", "lseek": "file",
    "unlink": "file", "newfstatat": "file", "fstat": "file", "access": "file",
}  # fmt: skip


def parse_raw(text: str) -> Counter[tuple[str, ...]]:
    """py-spy's ``--format raw``: collapsed stacks, root first, ``;``-separated, a count last."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.strip().rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def _where(frame: str) -> str:
    m = _FRAME.match(frame)
    return f"{m['file']} ({m['func']})" if m else frame


def classify(stack: tuple[str, ...], rules: list[tuple[str, re.Pattern[str]]], default: str = "other") -> str:
    for frame in reversed(stack):  # leaf first
        where = _where(frame)
        for name, pattern in rules:
            if pattern.search(where):
                return name
    return default


def fold_pyspy(stacks: Counter[tuple[str, ...]]) -> dict[str, Any]:
    """py-spy's samples by layer and by leaf library, and those left to perf (a lock release)."""
    layers: dict[str, Counter[str]] = {"loop": Counter(), "workers": Counter()}
    leaves: Counter[str] = Counter()
    others: Counter[str] = Counter()
    at_release = 0
    for stack, n in stacks.items():
        leaves[classify(stack[-1:], LEAVES, "other (stdlib, builtins)")] += n
        if SYSCALL_WITH_GIL.search(_where(stack[-1])):
            at_release += n
            continue
        # a worker's stack starts at its thread's bootstrap; the event loop runs on the main thread
        thread = "workers" if _where(stack[0]).startswith("threading.py") else "loop"
        layer = classify(stack, LAYERS)
        if layer == "other" and len(stack) == 1:
            layer = "unresolved (py-spy read a one-frame stack)"
        layers[thread][layer] += n
        if layer == "other":
            others[_where(stack[-1])] += n
    both = layers["loop"] + layers["workers"]
    return {"samples": sum(stacks.values()), "at_lock_release": at_release,
            "loop_samples": sum(layers["loop"].values()), "worker_samples": sum(layers["workers"].values()),
            "layers": dict(both.most_common()), "by_thread": {k: dict(v.most_common()) for k, v in layers.items()},
            "leaves": dict(leaves.most_common()), "other_top": dict(others.most_common(8))}  # fmt: skip


def parse_perf(text: str, pid: int) -> Counter[tuple[str, str]]:
    """``perf script -F pid,tid,period,ip,sym,dso``: CPU nanoseconds of ``pid`` by (thread, bucket);
    thread is "loop" (the main thread) or "workers", bucket "kernel:<socket|futex|epoll|file|other>",
    "sqlite" (the library) or "user" (the interpreter and every other C extension)."""
    out: Counter[tuple[str, str]] = Counter()
    for block in text.split("\n\n"):
        lines = [ln.strip() for ln in block.strip().splitlines()]
        if not lines:
            continue
        m = re.match(r"(\d+)/(\d+)\s+(\d+)", lines[0])
        if not m or int(m[1]) != pid:
            continue
        thread = "loop" if int(m[2]) == pid else "workers"
        frames = lines[1:]
        leaf = frames[0] if frames else ""
        if "[kernel.kallsyms]" in leaf:
            bucket = "other"
            for f in frames:
                sm = re.search(r"__(?:x64|ia32)_sys_(\w+)", f)
                if sm:
                    name = sm[1]
                    bucket = SYSCALLS.get(name, "other")
                    if name in ("read", "write", "readv", "writev"):
                        bucket = (
                            "socket"
                            if any("sock" in g or "tcp" in g or "unix_" in g for g in frames)
                            else "file"
                        )
                    break
            out[(thread, f"kernel:{bucket}")] += int(m[3])
        elif "sqlite" in leaf:
            out[(thread, "sqlite")] += int(m[3])
        else:
            out[(thread, "user")] += int(m[3])
    return out


# perf's kernel/SQLite buckets -> the layer they are given to (see the module docstring)
NATIVE = {
    ("loop", "kernel:socket"): "uvicorn (HTTP server, h11)",  # client sockets, the loop's self-pipe
    ("loop", "kernel:epoll"): "asyncio event loop",
    ("workers", "kernel:socket"): "httpx/httpcore (upstream client)",
    ("workers", "kernel:epoll"): "httpx/httpcore (upstream client)",  # httpcore's is_socket_readable poll
    ("loop", "kernel:futex"): "anyio / worker-thread hop",
    ("workers", "kernel:futex"): "anyio / worker-thread hop",
    ("loop", "kernel:file"): "trace store",
    ("workers", "kernel:file"): "trace store",
    ("loop", "sqlite"): "trace store",
    ("workers", "sqlite"): "trace store",
}
# the brief's summary rows
GROUPS = {
    "HTTP server: uvicorn + h11 + asyncio loop (incl. client socket syscalls)":
        ["uvicorn (HTTP server, h11)", "asyncio event loop"],
    "FastAPI/Starlette routing + request validation (pydantic)": ["FastAPI/Starlette (routing, validation)"],
    "our gateway: handler, auth, queueing, translate/plan, shaping":
        ["gateway handler (app, queueing, auth)", "translate/plan", "response building (shaping)"],
    "the ladder: runner, policy, contracts, gate": ["ladder (runner, policy, outcome)", "contracts",
                                                     "learning (gate, skip)", "other modelladder"],
    "upstream call: openai SDK + httpx/httpcore + our adapter (incl. socket syscalls)":
        ["openai SDK", "httpx/httpcore (upstream client)", "backend adapter (openai_compat, http_guard)"],
    "trace write: TraceStore + sqlite3 + file I/O": ["trace store"],
    "thread hop: anyio, queue wake-ups, futex (GIL hand-offs)": ["anyio / worker-thread hop"],
    "logging, metrics, otel": ["logging", "metrics, health", "otel"],
}  # fmt: skip
OTHER = "other: no layer on the stack, one-frame py-spy stacks, kernel scheduling and page faults"


def combine(spy: dict[str, Any], perf: Counter[tuple[str, str]]) -> dict[str, float]:
    """Shares (%) of the gateway's CPU by layer: perf's native buckets by rule, each thread's
    user-space CPU in the proportions of that thread's py-spy samples (py-spy's split between
    the threads is not trusted: the GIL's holder is not always on a core), the kernel's "other"
    (page faults, scheduling) apart."""
    total = sum(perf.values())
    shares: defaultdict[str, float] = defaultdict(float)
    for (thread, bucket), ns in perf.items():
        if bucket == "user":
            mine = spy["by_thread"][thread] or spy["layers"]
            counted = sum(mine.values())
            for layer, n in mine.items():
                shares[layer] += ns * n / counted
        elif (thread, bucket) in NATIVE:
            shares[NATIVE[(thread, bucket)]] += ns
        else:
            shares["kernel: other (scheduling, page faults, interrupts)"] += ns
    return {k: 100 * v / total for k, v in sorted(shares.items(), key=lambda kv: -kv[1])}


def grouped(shares: dict[str, float]) -> dict[str, float]:
    out: defaultdict[str, float] = defaultdict(float)
    for k, v in shares.items():
        out[next((g for g, members in GROUPS.items() if k in members), OTHER)] += v
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """user and system CPU seconds of every thread of ``pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            f = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = (int(f[11]) / tick, int(f[12]) / tick)
    return out


def thread_delta(pid: int, before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]]
                 ) -> dict[str, float]:  # fmt: skip
    d: defaultdict[str, float] = defaultdict(float)
    for tid, (u, s) in after.items():
        u0, s0 = before.get(tid, (0.0, 0.0))
        who = "loop" if tid == pid else "workers"
        d[f"{who}_user_s"] += u - u0
        d[f"{who}_sys_s"] += s - s0
    return {k: round(v, 2) for k, v in sorted(d.items())}


def report(
    meta: dict[str, Any], spy: dict[str, Any], perf: Counter[tuple[str, str]] | None
) -> dict[str, Any]:
    res: dict[str, Any] = {**meta, "pyspy": spy}
    per = meta.get("cpu_ms_per_req")
    if meta.get("requests"):
        print(f"\n{meta['clients']} clients: {meta['requests']} requests in {meta['load_s']:.1f} s "
              f"({meta['req_per_s']:.0f} req/s), errors {meta['errors']}, p50 {meta['p50_ms']} ms, "
              f"p99 {meta['p99_ms']} ms")  # fmt: skip
        print(f"gateway CPU (/proc) over the load: {meta['cpu_s_load']:.2f} s = {per:.2f} ms per request; "
              f"over the whole recording {meta['cpu_s_recording']:.2f} s, by thread: {meta['threads']}")  # fmt: skip
    print(f"py-spy: {spy['samples']} GIL samples / {meta['rate']} Hz = {spy['samples'] / meta['rate']:.2f} s "
          f"(event-loop thread {100 * spy['loop_samples'] / max(1, spy['samples']):.0f} %; "
          f"{spy['at_lock_release']} at a lock release, left to perf's futex)")  # fmt: skip
    rows: list[tuple[str, dict[str, float]]] = []
    if perf:
        total = sum(perf.values())
        buckets = {f"{t} {b}": round(100 * ns / total, 1) for (t, b), ns in perf.most_common()}
        res["perf_pct"] = buckets
        print(
            f"perf: {total / 1e9:.2f} s on CPU in the gateway's threads, "
            f"{100 * sum(ns for (t, b), ns in perf.items() if b.startswith('kernel')) / total:.0f} % in the kernel"
        )
        print("  " + ", ".join(f"{k} {v:.1f}%" for k, v in buckets.items()))
        shares = combine(spy, perf)
        res["by_layer_pct"] = {k: round(v, 1) for k, v in shares.items()}
        res["by_group_pct"] = {k: round(v, 1) for k, v in grouped(shares).items()}
        rows = [("by group (share of the gateway's CPU)", grouped(shares)),
                ("by layer (share of the gateway's CPU)", shares)]  # fmt: skip
    n = sum(spy["layers"].values())
    rows.append(("py-spy alone, by layer (share of GIL samples; not CPU: no system calls, no SQLite engine)",
                 {k: 100 * v / n for k, v in spy["layers"].items()}))  # fmt: skip
    rows.append(("py-spy alone, by leaf library (self time, share of GIL samples)",
                 {k: 100 * v / spy["samples"] for k, v in spy["leaves"].items()}))  # fmt: skip
    for title, table in rows:
        print(f"\n{title}:")
        cpu = per if per and not title.startswith("py-spy") else None
        for k, v in table.items():
            print(f"  {k:82s} {v:5.1f}%" + (f"  {v / 100 * cpu:5.2f} ms/req" if cpu else ""))
        print(f"  {'total':82s} {sum(table.values()):5.1f}%" + (f"  {cpu:5.2f} ms/req" if cpu else ""))
    if spy["other_top"]:
        print(
            "\npy-spy samples in no layer (top leaves):",
            ", ".join(f"{k}: {v}" for k, v in spy["other_top"].items()),
        )
    return res


def record(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="ml-profile-"))
    env = {**os.environ, "MOCK_API_KEY": "sk-mock",
           "PYTHONPATH": os.pathsep.join([str(gvl.ROOT / "src"), str(gvl.ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    for var in (
        "MODELLADDER_TRACES",
        "MODELLADDER_FLEET",
        "MODELLADDER_API_KEYS",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ):
        env.pop(var, None)
    targets: list[gvl.Target] = []
    try:
        mport = gvl.free_port()
        mock = gvl.start("mock", [sys.executable, "-c", gvl.MOCK, str(mport)],
                         f"http://127.0.0.1:{mport}/v1", "mock", tmp, env)  # fmt: skip
        targets.append(mock)
        fleet = tmp / "fleet.toml"
        fleet.write_text(
            f'[[rung]]\nname = "mock"\nbackend = "openai"\nurl = "{mock.url}"\nmodel = "mock"\n'
            'api_key_env = "MOCK_API_KEY"\nparams = 1\nplacement = "cloud"\n'
        )
        keys = tmp / "keys.txt"
        keys.write_text(gvl.KEY + "\n")
        port = gvl.free_port()
        db = ":memory:" if args.memory_traces else str(tmp / "traces.sqlite")
        argv = [sys.executable, "-c", "from modelladder.cli import main; main()", "serve", "--port", str(port),
                "--fleet", str(fleet), "--db", db, "--api-key-file", str(keys), "--max-queue", "1024",
                "--no-preload", "--log-level", "warning"]  # fmt: skip
        gw = gvl.start("modelladder", argv, f"http://127.0.0.1:{port}/v1", "ladder", tmp, env)
        targets.append(gw)
        assert gw.proc is not None
        pid = gw.proc.pid
        print(f"warm-up {args.warmup:g} s ...", flush=True)
        asyncio.run(gvl.closed_loop(gw, args.clients, args.warmup))
        secs = str(int(args.seconds))
        th0, s0 = thread_cpu(pid), gvl.cpu_seconds(pid)
        spy = subprocess.Popen([str(args.py_spy), "record", "--rate", str(args.rate), "--format", "raw", "--gil",
                                "--nonblocking", "--pid", str(pid), "--duration", secs, "--output", str(out / "pyspy.raw")],
                               stdout=subprocess.DEVNULL, stderr=(out / "py-spy.log").open("wb"))  # fmt: skip
        perf = None
        if args.perf:
            perf = subprocess.Popen([str(args.perf), "record", "-a", "-g", "-e", "cpu-clock", "-F", str(args.rate),
                                     "-o", str(out / "perf.data"), "--", "sleep", secs],
                                    stdout=subprocess.DEVNULL, stderr=(out / "perf.log").open("wb"))  # fmt: skip
        time.sleep(1.0)  # the recorders attach
        c0 = gvl.cpu_seconds(pid)
        lat, errors, wall, n = asyncio.run(gvl.closed_loop(gw, args.clients, args.seconds - 1.5))
        cpu = gvl.cpu_seconds(pid) - c0
        spy.wait(timeout=60)
        if perf is not None:
            perf.wait(timeout=60)
        th1, s1 = thread_cpu(pid), gvl.cpu_seconds(pid)
    finally:
        for t in reversed(targets):
            gvl.stop(t)
    if not (out / "pyspy.raw").exists():
        raise SystemExit(
            f"py-spy wrote no profile; its log:\n{(out / 'py-spy.log').read_text(errors='replace')[-2000:]}"
        )
    if args.perf and not (out / "perf.data").exists():  # not allowed to sample the system, most likely
        log = (out / "perf.log").read_text(errors="replace")[-1000:]
        print(f"perf recorded nothing (py-spy's view only, not a CPU breakdown); its log ends:\n{log}")
    elif args.perf:
        with (out / "perf.txt").open("wb") as fh:
            subprocess.run([str(args.perf), "script", "-i", str(out / "perf.data"), "-F", "pid,tid,period,ip,sym,dso"],
                           stdout=fh, stderr=subprocess.DEVNULL, check=True)  # fmt: skip
        (out / "perf.data").unlink()
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": gvl.machine(), "pid": pid,
        "clients": args.clients, "rate": args.rate, "requests": n, "errors": errors, "load_s": round(wall, 2),
        "req_per_s": round(n / wall, 1), "p50_ms": round(gvl.pct(lat, 50), 2), "p99_ms": round(gvl.pct(lat, 99), 2),
        "cpu_s_load": round(cpu, 2), "cpu_ms_per_req": round(cpu / max(1, n) * 1e3, 3),
        "cpu_s_recording": round(s1 - s0, 2), "threads": thread_delta(pid, th0, th1),
        "loadavg_1m": round(os.getloadavg()[0], 2), "traces": "memory" if args.memory_traces else "sqlite",
    }  # fmt: skip
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--py-spy", type=Path, default=Path("/tmp/pyspy-venv/bin/py-spy"), help="py-spy executable"
    )
    ap.add_argument("--perf", type=Path, default=Path(shutil.which("perf") or "perf"), help="perf executable")
    ap.add_argument("--no-perf", dest="perf", action="store_const", const=None, help="py-spy only")
    ap.add_argument("--out", type=Path, help="keep the recordings here (pyspy.raw, perf.txt, meta.json)")
    ap.add_argument("--refold", type=Path, help="only fold the recordings saved in this --out folder")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0, help="recording (and load) duration")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--rate", type=int, default=200, help="samples per second (py-spy, and perf per CPU)")
    ap.add_argument("--memory-traces", action="store_true", help="traces in memory instead of a SQLite file")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if args.refold:
        out = args.refold
        meta = json.loads((out / "meta.json").read_text())
    else:
        if not (args.py_spy.is_file() and os.access(args.py_spy, os.X_OK)):
            raise SystemExit(f"py-spy not found at {args.py_spy}: python3 -m venv /tmp/pyspy-venv && "
                             "/tmp/pyspy-venv/bin/pip install py-spy")  # fmt: skip
        if args.perf is not None and not args.perf.is_file():
            raise SystemExit(f"perf not found at {args.perf}; pass --perf PATH or --no-perf")
        if args.seconds < 5:
            raise SystemExit("--seconds must be at least 5")
        out = args.out or Path(tempfile.mkdtemp(prefix="ml-profile-out-"))
        out.mkdir(parents=True, exist_ok=True)
        meta = record(args, out)
    spy = fold_pyspy(parse_raw((out / "pyspy.raw").read_text()))
    perf = (
        parse_perf((out / "perf.txt").read_text(errors="replace"), meta["pid"])
        if (out / "perf.txt").exists()
        else None
    )
    res = report(meta, spy, perf)
    print(f"\nrecordings: {out}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
