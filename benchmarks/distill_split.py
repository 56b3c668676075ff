"""Which BFCL items ``distill dataset`` puts in its train and holdout splits, without a trace
store: the same hash of the same normalised input (``modelladder.distill.dedup``). Lets a
retrieval run use the distillation proof's very examples (``bench bfcl --examples-ids``) and
be scored on its holdout (``benchmarks/retrieval_compare.py --only``).

    python benchmarks/distill_split.py --category live_simple --category live_multiple --limit 200 \\
        --holdout 0.5 --train runs/distill-train.ids --holdout-out runs/distill-holdout.ids
"""

from __future__ import annotations

import argparse
from pathlib import Path

from modelladder.bench.bfcl.data import load_items
from modelladder.distill.dedup import input_text, normalise, split_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--category", action="append", required=True)
    ap.add_argument("--limit", type=int, default=None, help="the first N items of each category")
    ap.add_argument("--holdout", type=float, default=0.5)
    ap.add_argument("--train", type=Path, required=True, help="file for the train split's item ids")
    ap.add_argument("--holdout-out", type=Path, required=True, help="file for the holdout's item ids")
    args = ap.parse_args()
    split: dict[str, list[str]] = {"train": [], "holdout": []}
    for cat in args.category:
        for item in load_items(cat, args.limit):
            split[split_of(normalise(input_text(item.messages)), args.holdout)].append(item.id)
    args.train.write_text("".join(i + "\n" for i in split["train"]))
    args.holdout_out.write_text("".join(i + "\n" for i in split["holdout"]))
    print(
        f"train {len(split['train'])} items -> {args.train}; holdout {len(split['holdout'])} -> {args.holdout_out}"
    )


if __name__ == "__main__":
    main()
