"""Edge-rung benchmark for the ladder issue: BFCL simple_python tool calls on SmolLM2-135M.

Prints, for the first N items: AST accuracy (BFCL's official checker), per-step latency
p50/p95, and the constraint overhead per decoded token (the same token sequence decoded
one token at a time with and without the llguidance mask), plus the machine and command.

    python benchmarks/edge_step.py --limit 100
    python benchmarks/edge_step.py --limit 100 --ground-strings   # the rung option ground_strings
    python benchmarks/edge_step.py --limit 100 --shared-tools     # steps that share a tool list

Every BFCL item has its own tool list, so by default each step evaluates that list afresh
(only the fixed instructions come from the KV cache). ``--shared-tools`` measures the agent-loop
case the prefix cache is for: before each timed step, an untimed step with the same tools and
another question fills the cache, so the timed step evaluates only its own question.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

from modelladder import GenerationParams, ToolCalls, load_fleet
from modelladder.backends import open_backend
from modelladder.backends.llamacpp import LlamaCppBackend
from modelladder.bench.bfcl.data import load_items
from modelladder.bench.bfcl.score import score


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q * 100))


def replay(backend: LlamaCppBackend, messages, contract, tokens: list[int], constrained: bool) -> float:  # noqa: ANN001
    """Seconds per token to decode ``tokens`` one at a time, with or without the mask work."""
    prompt, _ = backend.render(messages, contract)
    backend._feed_prompt(prompt)
    llm = backend.model.llm
    # the same matcher generate() builds (grounded or not)
    matcher = backend._matcher(contract, messages) if constrained else None
    mask = np.zeros((backend.model.n_vocab + 31) // 32, dtype=np.int32)
    t0 = time.perf_counter()
    for tok in tokens:
        logits = backend._logits()
        if matcher is not None:
            allowed = backend._allowed(matcher, mask)
            logits = np.where(allowed, logits, -np.inf)
            matcher.consume_token(tok)
        _ = int(np.argmax(logits))
        llm.eval([tok])
    return (time.perf_counter() - t0) / max(1, len(tokens))


WARM_UP = [{"role": "user", "content": "Which of these tools can help me today?"}]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--overhead-items", type=int, default=20)
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument(
        "--shared-tools",
        action="store_true",
        help="time each step after an untimed step with the same tools (an agent loop's cache)",
    )
    ap.add_argument(
        "--ground-strings",
        action="store_true",
        help="the rung option ground_strings: string arguments copied from the question",
    )
    args = ap.parse_args()

    fleet = load_fleet()
    backend = open_backend(fleet.rung("smollm2-135m"))
    backend.ground_strings = args.ground_strings
    items = load_items("simple_python", limit=args.limit)
    lat, ok, prompt_toks, cached, gen_toks = [], 0, [], [], []
    overhead = []
    for i, item in enumerate(items):
        contract = ToolCalls(item.tools)
        if args.shared_tools:
            backend.generate(WARM_UP, contract, GenerationParams(max_tokens=8))
        g = backend.generate(item.messages, contract, GenerationParams(max_tokens=256))
        verdict = contract.validate(g.text, item.messages)
        ok += score(item, verdict.value if verdict.ok else None).valid
        lat.append(g.latency_s)
        prompt_toks.append(g.prompt_tokens)
        cached.append(g.cached_prompt_tokens)
        gen_toks.append(g.completion_tokens)
        if i < args.overhead_items and verdict.ok:
            toks = backend.model.llm.tokenize(g.text.encode(), add_bos=False, special=True)
            plain = replay(backend, item.messages, contract, toks, constrained=False)
            masked = replay(backend, item.messages, contract, toks, constrained=True)
            overhead.append((masked - plain) / plain)
    cpu = subprocess.run(
        ["sh", "-c", "lscpu | grep 'Model name' | cut -d: -f2"], capture_output=True, text=True
    ).stdout.strip()
    figures = {
        "items": len(items),
        "ground_strings": args.ground_strings,
        "shared_tools": args.shared_tools,
        "accuracy": ok / len(items),
        "p50_latency_s": pct(lat, 0.5),
        "p95_latency_s": pct(lat, 0.95),
        "mean_prompt_tokens": statistics.mean(prompt_toks),
        "mean_cached_prompt_tokens": statistics.mean(cached),
        "mean_completion_tokens": statistics.mean(gen_toks),
        "constraint_overhead_per_token": statistics.median(overhead) if overhead else None,
        "machine": f"{os.cpu_count()} cores, {cpu or platform.processor()}",
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "date": time.strftime("%Y-%m-%d"),
    }
    for k, v in figures.items():
        print(f"{k:>30}: {v:.3f}" if isinstance(v, float) else f"{k:>30}: {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
