"""Prompt-processing and decode speed of llama.cpp builds, side by side in one run.

Each build is a llama-cpp-python wheel unpacked into its own folder (``pip install --no-deps
--target DIR WHEEL``); every measurement runs in a fresh child process with that folder first
on ``sys.path``, and the builds are interleaved round by round so that machine noise hits all
of them alike. A build that dies (SIGILL on an AMX VM, for instance) is reported as such.

    python benchmarks/build_variants.py native=/tmp/b/native portable=/tmp/b/portable \\
        avx2=/tmp/b/avx2 --rounds 5

Prints a Markdown table (median over rounds) for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import contextlib, io, json, sys, time
import llama_cpp
import numpy as np
path, n_prompt, n_decode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with contextlib.redirect_stderr(io.StringIO()):
    llm = llama_cpp.Llama(path, n_ctx=2048, n_threads=2, n_threads_batch=2, n_batch=512, verbose=False)
text = " ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 80)
tokens = llm.tokenize(text.encode())[:n_prompt]
llm.eval(tokens[:8]); llm.reset()  # warm-up
t0 = time.perf_counter(); llm.eval(tokens); pp = time.perf_counter() - t0
t0 = time.perf_counter()
for _ in range(n_decode):
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),))
    tok = int(logits.argmax())  # greedy, as a real decode would
    llm.eval([tok])
dec = time.perf_counter() - t0
print(json.dumps({"pp_tok_s": len(tokens) / pp, "decode_tok_s": n_decode / dec,
                  "info": llama_cpp.llama_print_system_info().decode()}))
"""


def measure(folder: Path, model: Path, n_prompt: int, n_decode: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(folder))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), str(n_prompt), str(n_decode)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if proc.returncode != 0:
        why = f" (signal {-proc.returncode})" if proc.returncode < 0 else f": {proc.stderr.strip()[-300:]}"
        return {"error": f"exit {proc.returncode}{why}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("builds", nargs="+", help="NAME=FOLDER (a wheel installed with --target)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prompt", type=int, default=512, help="prompt tokens")
    ap.add_argument("--decode", type=int, default=128, help="decoded tokens (one eval each)")
    ns = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from modelladder.fleet import load_fleet

    models = {r.name: r.resolve_path() for r in load_fleet(None).rungs if r.backend == "llamacpp"}
    builds = dict(b.split("=", 1) for b in ns.builds)
    runs: dict[tuple[str, str], list[dict]] = {}
    for rnd in range(ns.rounds):
        for model_name, model in models.items():
            for build, folder in builds.items():
                r = measure(Path(folder), model, ns.prompt, ns.decode)
                runs.setdefault((build, model_name), []).append(r)
                print(
                    f"round {rnd + 1}/{ns.rounds} {model_name} {build}: "
                    + (
                        r.get("error")
                        or f"pp {r['pp_tok_s']:.0f} tok/s, decode {r['decode_tok_s']:.1f} tok/s"
                    ),
                    file=sys.stderr,
                    flush=True,
                )
    print(
        f"\n| model | build | prompt tok/s ({ns.prompt} tokens) | decode tok/s | vs first build (pp / decode) |"
    )
    print("|---|---|---|---|---|")
    first = next(iter(builds))
    for model_name in models:
        base = runs[(first, model_name)]
        for build in builds:
            rs = runs[(build, model_name)]
            if any("error" in r for r in rs):
                print(f"| {model_name} | {build} | {rs[0].get('error', 'failed')} | | |")
                continue
            pp = statistics.median(r["pp_tok_s"] for r in rs)
            dec = statistics.median(r["decode_tok_s"] for r in rs)
            ok = not any("error" in r for r in base)
            rel = (
                (
                    f"{pp / statistics.median(r['pp_tok_s'] for r in base):.2f}x / "
                    f"{dec / statistics.median(r['decode_tok_s'] for r in base):.2f}x"
                )
                if ok
                else "-"
            )
            print(f"| {model_name} | {build} | {pp:.0f} | {dec:.1f} | {rel} |")
    for build, folder in builds.items():
        info = next((r["info"] for (b, _), rs in runs.items() if b == build for r in rs if "info" in r), "")
        print(f"\n{build} ({folder}): {info.strip()}")


if __name__ == "__main__":
    main()
