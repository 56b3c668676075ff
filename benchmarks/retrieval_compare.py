"""Zero-shot against retrieved examples, step by step: two (or more) runs of ``bench bfcl`` or
``bench agent`` over the same items, compared on the steps they share.

    python benchmarks/retrieval_compare.py runs/bfcl-ret-live_simple-k0 runs/bfcl-ret-live_simple-k3

The first directory is the baseline. For each run: accuracy (BFCL's AST checker, or ``bench
agent``'s exec score), steps won and lost against the baseline, the share of steps shown at
least one example and the accuracy on those and on the rest, mean prompt tokens and the p50 /
mean of the step's model time. ``--only FILE`` restricts the comparison to the ids listed in
FILE (one per line), e.g. another proof's holdout; ``--json`` writes the rows. ``--windows N``
also splits the steps by the *last* run's item arrival order (its ``results.jsonl`` order, the
traffic order of an ``--online`` run) into N windows of items and gives every run's accuracy on
each: does an online run catch up with the offline one as its store fills?
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelladder.bench.results import RESULTS, read_results


def _ok(rec: Mapping[str, Any]) -> bool:
    return bool(rec.get("ast_valid") if "ast_valid" in rec else rec.get("ok"))


def _examples(rec: Mapping[str, Any]) -> int:
    attempts = rec.get("attempts") or []
    return max((len((a.get("shaping") or {}).get("examples") or []) for a in attempts), default=0)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def compare(dirs: list[Path], only: set[str] | None = None) -> list[dict[str, Any]]:
    runs = [read_results(d / RESULTS, repair=False) for d in dirs]
    ids = set.intersection(*(set(r) for r in runs))
    if only is not None:
        ids &= only
    base = runs[0]
    rows = []
    for d, run in zip(dirs, runs, strict=True):
        recs = [run[i] for i in sorted(ids)]
        shown = [r for r in recs if _examples(r)]
        rest = [r for r in recs if not _examples(r)]
        lat = [float(r.get("latency_s") or 0.0) for r in recs]
        rows.append({
            "run": str(d), "steps": len(recs), "accuracy": _share(sum(map(_ok, recs)), len(recs)),
            "won": sum(1 for i in ids if _ok(run[i]) and not _ok(base[i])),
            "lost": sum(1 for i in ids if _ok(base[i]) and not _ok(run[i])),
            "shown_share": _share(len(shown), len(recs)),
            "accuracy_shown": _share(sum(map(_ok, shown)), len(shown)),
            "baseline_accuracy_shown": _share(sum(_ok(base[str(r["id"])]) for r in shown), len(shown)),
            "accuracy_rest": _share(sum(map(_ok, rest)), len(rest)),
            "prompt_tokens_mean": round(statistics.fmean(int(r.get("prompt_tokens") or 0) for r in recs), 1)
            if recs else None,
            "p50_s": round(statistics.median(lat), 3) if lat else None,
            "mean_s": round(statistics.fmean(lat), 3) if lat else None,
        })  # fmt: skip
    return rows


def by_arrival(dirs: list[Path], windows: int) -> list[dict[str, Any]]:
    """Accuracy of every run on the steps of each window of the last run's items, in arrival order."""
    runs = [read_results(d / RESULTS, repair=False) for d in dirs]
    ids = set.intersection(*(set(r) for r in runs))
    # dict order is the file's: arrival order
    items = list(dict.fromkeys(str(rec.get("item")) for rec in runs[-1].values()))
    size = -(-len(items) // windows)
    rows = []
    for w in range(windows):
        window = set(items[w * size : (w + 1) * size])
        steps = [i for i in ids if str(runs[-1][i].get("item")) in window]
        if not steps:
            continue
        row: dict[str, Any] = {"items": f"{w * size + 1}-{min((w + 1) * size, len(items))}", "steps": len(steps),
                               "shown_share": _share(sum(1 for i in steps if _examples(runs[-1][i])), len(steps))}  # fmt: skip
        for d, run in zip(dirs, runs, strict=True):
            row[str(d)] = _share(sum(_ok(run[i]) for i in steps), len(steps))
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", type=Path, nargs="+", help="run directories; the first is the baseline")
    ap.add_argument("--only", type=Path, default=None, help="a file of step ids to restrict to")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--windows", type=int, default=0, help="also split by the last run's arrival order")
    args = ap.parse_args()
    only = set(args.only.read_text().split()) if args.only else None
    rows = compare(args.dirs, only)
    cols = ["steps", "accuracy", "won", "lost", "shown_share", "accuracy_shown", "baseline_accuracy_shown",
            "accuracy_rest", "prompt_tokens_mean", "p50_s", "mean_s"]  # fmt: skip
    print("run | " + " | ".join(cols))
    for r in rows:
        print(f"{r['run']} | " + " | ".join(str(r[c]) for c in cols))
    if args.windows:
        windows = by_arrival(args.dirs, args.windows)
        print("\nitems (arrival order) | steps | shown_share | " + " | ".join(map(str, args.dirs)))
        for w in windows:
            print(" | ".join(str(v) for v in w.values()))
        rows = [*rows, *({"window": w} for w in windows)]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
