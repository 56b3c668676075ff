"""Tool selection on ``bench agent``'s step suite, without a model: for each ``k``, how often
the gold call's tool is among the ``k`` tools offered (:func:`modelladder.learning.tool_selection.select_tools`:
BM25 over the user messages plus every tool already called), and how much of the tool list's
prompt text is left (characters of the rendered tool list, the part of the prompt that shrinks).

    python benchmarks/tool_selection_recall.py --category multi_turn_base --k 4 6 8 12 16

Prints one row per k; ``--json`` writes them too. Steps at the end of a turn (no gold call)
are left out of recall (any tool list allows the decline).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from modelladder._progress import progress_bar
from modelladder.bench.agent.data import load_agent_items
from modelladder.bench.agent.steps import iter_steps
from modelladder.contracts.tools import render_tools
from modelladder.learning.tool_selection import select_tools


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--category", default="multi_turn_base")
    ap.add_argument("--k", type=int, nargs="+", default=[4, 6, 8, 12, 16])
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    items = load_agent_items(args.category, args.limit)
    hits = dict.fromkeys(args.k, 0)
    chars = dict.fromkeys(args.k, 0)
    full_chars = steps = 0
    n_items = len(items)
    with progress_bar(console=None) as bar:
        task = bar.add_task("steps", total=n_items)
        for item in items:
            for case in iter_steps(item):
                if case.gold is None:
                    continue
                steps += 1
                gold = case.gold.split("(", 1)[0].strip()
                names = [t["function"]["name"] for t in case.tools]
                full = render_tools([t["function"] for t in case.tools])
                full_chars += len(full)
                for k in args.k:
                    offered = select_tools(case.tools, case.messages, k)
                    hits[k] += gold in offered
                    chars[k] += len(
                        render_tools([t["function"] for t in case.tools if t["function"]["name"] in offered])
                    )
                assert gold in names, (case.id, gold)
            bar.update(task, advance=1)
    rows = [{"k": k, "recall": hits[k] / steps, "tool_text_share": chars[k] / full_chars} for k in args.k]
    print(f"{args.category}: {steps} call steps, {n_items} items, tools per step: all of the item's")
    print(f"{'k':>4} {'recall':>8} {'tool text left':>15}")
    for r in rows:
        print(f"{r['k']:>4} {r['recall']:>8.1%} {r['tool_text_share']:>15.1%}")
    if args.json:
        args.json.write_text(
            json.dumps({"category": args.category, "steps": steps, "rows": rows}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
