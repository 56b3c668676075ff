"""The ex-ante skip proof (issue 15, item 8) on ``bench agent`` step results: from the request
alone, how many of the edge's steps can be started higher, and does the certified bound on
the right edge answers given up hold?

Input: the ``--out`` directory of a ``modelladder bench agent --mode rung:<edge>`` run (its
``results.jsonl``: one line per step, the edge's answer scored by BFCL's executable checker)
and the trace store that run wrote (``--traces``; the request each step sent is read there by
the line's ``run_id``). The label: the edge answer passed its contract and ``exec_ok``.

For each of ``--splits`` random splits, by a salted hash of the *conversation* (so steps of one
conversation never straddle the halves): the calibrate half is split again by run id into a
part that fits the predictor and a part that certifies its threshold
(:func:`modelladder.learning.skip.fit_and_certify_skip`, what ``gate calibrate-skip`` runs);
on the report half, which neither saw:

* the share of steps skipped, and the share of those the edge had right (the realised loss;
  goal: <= ``--max-lost`` in at least 95 % of the splits);
* the share of the edge's failures caught, and of the edge's decode time not spent;
* the ROC AUC of the predictor (does the request alone say anything?).

    .venv/bin/python benchmarks/skip_proof.py --results runs/agent-steps-smol-turn \\
        --traces /tmp/agent_home/traces.sqlite
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelladder.learning.request_features import from_request
from modelladder.learning.skip import SkipExample, fit_and_certify_skip
from modelladder.traces import TraceStore, UnknownRunError


def load(results: Path, store: TraceStore, rung: str) -> list[dict[str, Any]]:
    """One item per step line with a stored request: its conversation, features, label, edge latency."""
    out = []
    for line in (results / "results.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        edge = next((a for a in rec.get("attempts") or [] if a.get("rung") == rung), None)
        if edge is None or rec.get("error") or not rec.get("run_id"):
            continue
        try:
            run = store.get_run(rec["run_id"])
        except UnknownRunError:
            continue
        ok = bool(edge.get("ok")) and bool(rec.get("exec_ok"))
        row = from_request(run.messages, run.contract, rung)
        out.append({"id": str(rec["id"]), "item": str(rec.get("item") or rec["id"]), "run_id": rec["run_id"],
                    "example": SkipExample(rec["run_id"], row, ok), "latency_s": float(edge.get("latency_s") or 0.0)})  # fmt: skip
    return out


def _side(key: str, salt: str) -> int:
    return hashlib.sha256(f"{salt}:{key}".encode()).digest()[0] & 1


def _auc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    if len(set(positive)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive, scores))


def one_split(
    items: Sequence[Mapping[str, Any]], split: int, max_lost: float, delta: float
) -> dict[str, Any]:
    salt = f"skip-proof-{split}"
    cal = [it for it in items if _side(it["item"], salt) == 0]
    rep = [it for it in items if _side(it["item"], salt) == 1]
    fit_part = [it["example"] for it in cal if _side(it["run_id"], salt + "-fit") == 0]
    held = [it["example"] for it in cal if _side(it["run_id"], salt + "-fit") == 1]
    out: dict[str, Any] = {
        "split": split,
        "n_fit": len(fit_part),
        "n_held_out": len(held),
        "n_report": len(rep),
    }
    if len({e.edge_ok for e in fit_part}) < 2 or not held or not rep:
        return {**out, "certified": False, "why": "a half lacks both outcomes"}
    model, cert = fit_and_certify_skip(fit_part, held, max_lost=max_lost, delta=delta)
    p_fail = [1.0 - model.score(it["example"].row) for it in rep]
    skipped = [
        it for it, p in zip(rep, p_fail, strict=True) if cert.certified and p >= (cert.threshold or 2.0)
    ]
    lost = sum(it["example"].edge_ok for it in skipped)
    failures = sum(not it["example"].edge_ok for it in rep)
    total_s = sum(it["latency_s"] for it in rep)
    realised = lost / len(skipped) if skipped else None
    out.update(
        certified=cert.certified, threshold=cert.threshold, skipped=len(skipped), skip_share=len(skipped) / len(rep),
        lost=lost, realised_lost=realised, within=realised is None or realised <= max_lost,
        failures_caught=(len(skipped) - lost) / failures if failures else None,
        right_kept=1.0 - lost / (len(rep) - failures) if len(rep) > failures else None,
        edge_time_saved=sum(it["latency_s"] for it in skipped) / total_s if total_s else None,
        auc_fail=_auc(p_fail, [not it["example"].edge_ok for it in rep]),
        edge_right_rate=sum(it["example"].edge_ok for it in rep) / len(rep),
    )  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, required=True, help="a bench agent --out directory")
    ap.add_argument("--traces", type=Path, required=True, help="the trace store that run wrote")
    ap.add_argument("--rung", default="smollm2-135m")
    ap.add_argument("--max-lost", type=float, default=0.1)
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--json", type=Path, help="write the full result here")
    args = ap.parse_args(argv)
    if not 0 < args.max_lost < 1 or not 0 < args.confidence < 1:
        print("error: --max-lost and --confidence must be within (0, 1)", file=sys.stderr)
        return 2
    if not (args.results / "results.jsonl").is_file() or not args.traces.is_file():
        print(f"error: need {args.results}/results.jsonl and the trace store {args.traces}", file=sys.stderr)
        return 2
    store = TraceStore(args.traces)
    items = load(args.results, store, args.rung)
    store.close()
    if not items:
        print(f"error: no step of {args.results} has its run in {args.traces}", file=sys.stderr)
        return 2
    per = [one_split(items, s, args.max_lost, 1.0 - args.confidence) for s in range(args.splits)]

    def mean(key: str) -> float | None:
        vals = [p[key] for p in per if p.get(key) is not None]
        return statistics.fmean(vals) if vals else None

    res = {
        "steps": len(items), "conversations": len({it["item"] for it in items}),
        "edge_right_rate": sum(it["example"].edge_ok for it in items) / len(items),
        "max_lost": args.max_lost, "confidence": args.confidence, "splits": args.splits,
        "certified_splits": sum(bool(p.get("certified")) for p in per),
        "splits_within": sum(bool(p.get("within")) for p in per),
        "mean_skip_share": mean("skip_share"), "mean_realised_lost": mean("realised_lost"),
        "mean_failures_caught": mean("failures_caught"), "mean_right_kept": mean("right_kept"), "mean_edge_time_saved": mean("edge_time_saved"),
        "mean_auc_fail": mean("auc_fail"), "per_split": per,
    }  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f} %"

    print(f"steps {res['steps']} in {res['conversations']} conversations; edge right on {pct(res['edge_right_rate'])}; "
          f"max-lost {args.max_lost}, confidence {args.confidence}")  # fmt: skip
    print("| split | certified | skipped | right at the edge among skipped | failures caught | edge's right answers kept "
          "| edge time saved | AUC |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for p in per:
        auc = "-" if p.get("auc_fail") is None else f"{p['auc_fail']:.3f}"
        print(f"| {p['split']} | {'yes' if p.get('certified') else 'no'} | {pct(p.get('skip_share'))} | "
              f"{pct(p.get('realised_lost'))} | {pct(p.get('failures_caught'))} | {pct(p.get('right_kept'))} | "
              f"{pct(p.get('edge_time_saved'))} | "
              f"{auc} |")  # fmt: skip
    print(f"certified in {res['certified_splits']}/{args.splits} splits; realised loss <= max-lost in "
          f"{res['splits_within']}/{args.splits} ({'goal met' if res['splits_within'] >= 0.95 * args.splits else 'goal NOT met'}); "
          f"mean skipped {pct(res['mean_skip_share'])}, failures caught {pct(res['mean_failures_caught'])}, "
          f"edge's right answers kept {pct(res['mean_right_kept'])}, "
          f"edge time saved {pct(res['mean_edge_time_saved'])}, AUC {res['mean_auc_fail'] and round(res['mean_auc_fail'], 3)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
