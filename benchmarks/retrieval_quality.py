"""Which example index finds the right demonstrations, without a model: on ``bench agent``'s
step suite, for each call step, whether the gold call's tool is among the tools the retrieved
examples use (their calls so far and their answer), for BM25 and MiniLM, at k = 1, 3, 5.

Examples are the verified answers of an earlier reference run (``--examples-from``, in the
trace store ``--db``), retrieved through the same :class:`~modelladder.learning.EdgeShaper`
the ladder uses, with the benchmark's fold rule (only the other fold's items). Also times
the lookups (the shaper's whole call, p50/p99 ms).

    python benchmarks/retrieval_quality.py --examples-from runs/agent-steps-ref --db /tmp/agent_home/traces.sqlite
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

from modelladder._progress import progress_bar
from modelladder.bench.agent.data import load_agent_items
from modelladder.bench.agent.runner import STEP_NAME
from modelladder.bench.agent.steps import iter_steps
from modelladder.bench.retrieval import BenchShaping
from modelladder.contracts import ToolCalls
from modelladder.fleet_types import Policy, Rung
from modelladder.ladder import Step
from modelladder.ladder.shaping import ShapeRequest
from modelladder.learning.tool_selection import called_tools
from modelladder.traces import TraceStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--category", default="multi_turn_base")
    ap.add_argument("--examples-from", type=Path, required=True)
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--k", type=int, nargs="+", default=[1, 3, 5])
    ap.add_argument("--index", nargs="+", default=["bm25", "minilm"])
    ap.add_argument("--out", type=Path, default=Path("/tmp/retrieval_quality"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    items = load_agent_items(args.category, args.limit)
    cases = [c for it in items for c in iter_steps(it) if c.gold is not None]
    store = TraceStore(args.db, create=False)
    rung = Rung("edge", "llamacpp", 1, path="x")
    rows = []
    for kind in args.index:
        args.out.mkdir(parents=True, exist_ok=True)
        cfg = SimpleNamespace(examples_k=max(args.k), examples_from=args.examples_from, index=kind, out_dir=args.out,
                              max_tools=None, history_budget=None, online=False)  # fmt: skip
        t0 = time.perf_counter()
        shaping = BenchShaping.build(cfg, store, [it.id for it in items], STEP_NAME)
        assert shaping is not None
        build_s = time.perf_counter() - t0
        index = shaping.shaper.index
        steps: dict[tuple[str, ...], Step] = {}
        for k in args.k:
            hits = shown = 0
            times = []
            with progress_bar(console=None) as bar:
                task = bar.add_task(f"{kind} k={k}", total=len(cases))
                for case in cases:
                    names = tuple(t["function"]["name"] for t in case.tools)
                    step = steps.setdefault(names, Step(STEP_NAME, ToolCalls(case.tools, allow_no_call=True)))
                    shaping.current_item = case.item.id
                    req = ShapeRequest(
                        step, STEP_NAME, case.messages, rung, Policy(examples_k=k), "run", None
                    )
                    t = time.perf_counter()
                    view = shaping.shaper.shape(req)
                    times.append((time.perf_counter() - t) * 1000)
                    used: set[str] = set()
                    for e in (view.applied.get("examples") or []) if view else []:
                        ex = index.get(e["id"])
                        used.update(called_tools(ex.messages))
                        if isinstance(ex.value, list):
                            used.update(c.get("name") for c in ex.value if isinstance(c, dict))
                    shown += bool(used)
                    hits += case.gold.split("(", 1)[0].strip() in used
                    bar.update(task, advance=1)
            times.sort()
            rows.append({"index": kind, "k": k, "steps": len(cases), "gold_tool_in_examples": hits / len(cases),
                         "steps_with_examples": shown / len(cases), "shape_p50_ms": statistics.median(times),
                         "shape_p99_ms": times[int(0.99 * (len(times) - 1))], "build_s": build_s,
                         "examples": shaping.info.get("examples_indexed")})  # fmt: skip
    store.close()
    print(f"{args.category}: {len(cases)} call steps; examples from {args.examples_from} (other fold only)")
    print(f"{'index':>7} {'k':>3} {'gold tool in examples':>22} {'p50 ms':>8} {'p99 ms':>8}")
    for r in rows:
        print(
            f"{r['index']:>7} {r['k']:>3} {r['gold_tool_in_examples']:>22.1%} {r['shape_p50_ms']:>8.2f} {r['shape_p99_ms']:>8.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
