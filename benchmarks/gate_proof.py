"""The gate proof (issue 15) on ``bench bfcl`` results: does the certified gate keep its bound,
and how much does it keep at the edge compared with today's log-probability thresholds?

Input: one or more ``--out`` directories of ``modelladder bench bfcl`` runs (their
``results.jsonl``), in ``--mode rung:<edge>`` or ``--mode ladder --sweep-gate``. The label of
each item is BFCL's own checker on the edge rung's answer (source ``checker``).

For each of ``--splits`` random splits (a salted SHA-256 of the item id, so a split never
depends on the order of the file): the *calibrate* half is split again by another hash into a
part that fits the gate model and a held-out part that certifies the threshold
(:func:`modelladder.learning.calibrate.fit_and_certify`, the same code ``gate calibrate``
runs); the figures are measured on the *report* half, which neither saw.

Reported per split and over all splits:

* the realised accepted-wrong rate on the report half, and whether it is <= alpha (the goal:
  in at least 95 % of the splits);
* the edge share (items answered at the edge) of the certified gate;
* the edge share of today's gate (``min_mean_logprob`` x ``min_token_logprob`` over the sweep's
  grid) at the same or lower realised error *on the report half* -- the threshold pair is picked
  with hindsight on the very half it is scored on, which flatters today's gate: the comparison
  is conservative.

Items whose edge answer failed its contract (or was truncated, or errored) escalate under
every gate; they count in the edge-share denominator and never as accepted.

    .venv/bin/python benchmarks/gate_proof.py --results runs/smol-simple_python --rung smollm2-135m
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

from modelladder.bench.sweep import MEAN_GRID, MIN_GRID
from modelladder.learning.calibrate import fit_and_certify
from modelladder.learning.dataset import Example
from modelladder.learning.features import from_stored


def edge_attempt(rec: Mapping[str, Any], rung: str) -> dict[str, Any] | None:
    """The edge rung's attempt of one results line (sweep: ``rungs``; rung mode: ``attempts``)."""
    stored = (rec.get("rungs") or {}).get(rung)
    if stored is not None:
        return dict(stored)
    for a in rec.get("attempts") or []:
        if a.get("rung") == rung:
            out = dict(a)
            out.setdefault("calls", rec.get("calls"))
            out.setdefault("ast_valid", rec.get("ast_valid") if rec.get("rung") == rung else None)
            return out
    return None


def load(
    dirs: Sequence[Path], rung: str, label: str = "ast_valid", drop: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """One item per id: ``gated`` (the edge answer passed its contract, whole), its attempt and label.

    ``label``: the attempt's ``ast_valid`` (bench bfcl), or a field of the results line such as
    ``exec_ok`` (bench agent, rung mode); ``drop``: gate signals removed (an ablation)."""
    items: dict[str, dict[str, Any]] = {}
    for d in dirs:
        path = d / "results.jsonl" if d.is_dir() else d
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            a = edge_attempt(rec, rung)
            if a is None or rec.get("error"):
                continue
            gated = bool(a.get("ok")) and a.get("finish_reason") != "length" and not a.get("error")
            if drop:
                a["signals"] = {k: v for k, v in (a.get("signals") or {}).items() if k not in drop}
            correct = a.get(label) if label in a else rec.get(label)
            items[str(rec["id"])] = {"id": str(rec["id"]), "category": rec.get("category"), "gated": gated,
                                     "attempt": a, "correct": bool(correct)}  # fmt: skip
    return list(items.values())


def _side(item_id: str, salt: str) -> int:
    return hashlib.sha256(f"{salt}:{item_id}".encode()).digest()[0] & 1


def _example(it: Mapping[str, Any]) -> Example:
    return Example(it["id"], 0, None, from_stored(it["attempt"]), it["correct"], "checker", True)


def _rate(accepted: Sequence[Mapping[str, Any]]) -> float | None:
    return sum(not it["correct"] for it in accepted) / len(accepted) if accepted else None


def logprob_gate_accepts(it: Mapping[str, Any], mean_t: float | None, min_t: float | None) -> bool:
    """Today's gate (``ladder.policy.judge``'s confidence half) on a contract-passing answer."""
    a = it["attempt"]
    if not a.get("n_value_tokens"):
        return True
    if mean_t is not None and a.get("mean_logprob") is not None and a["mean_logprob"] < mean_t:
        return False
    return not (min_t is not None and a.get("min_logprob") is not None and a["min_logprob"] < min_t)


def one_split(items: Sequence[Mapping[str, Any]], split: int, alpha: float, delta: float,
              method: str) -> dict[str, Any]:  # fmt: skip
    salt = f"gate-proof-{split}"
    cal = [it for it in items if _side(it["id"], salt) == 0]
    rep = [it for it in items if _side(it["id"], salt) == 1]
    cal_gated = [it for it in cal if it["gated"]]
    fit_part = [_example(it) for it in cal_gated if _side(it["id"], salt + "-fit") == 0]
    held = [_example(it) for it in cal_gated if _side(it["id"], salt + "-fit") == 1]
    out: dict[str, Any] = {"split": split, "n_calibrate": len(cal), "n_report": len(rep),
                           "n_fit": len(fit_part), "n_held_out": len(held)}  # fmt: skip
    if not fit_part or not held or not rep:
        return {**out, "certified": False, "why": "a half is empty"}
    model, cert = fit_and_certify(fit_part, held, alpha=alpha, delta=delta, method=method)
    out.update(model=model.kind, certified=cert.certified, threshold=cert.threshold,
               upper_bound_held_out=cert.upper_bound, labels_needed=cert.labels_needed)  # fmt: skip
    rep_gated = [it for it in rep if it["gated"]]
    if cert.certified and cert.threshold is not None:
        acc = [it for it in rep_gated if model.score(from_stored(it["attempt"])) >= cert.threshold]
    else:
        acc = []  # not certified: escalate all
    realised = _rate(acc)
    out.update(accepted=len(acc), accepted_wrong=sum(not it["correct"] for it in acc),
               realised_accepted_wrong=realised, edge_share=len(acc) / len(rep),
               within_alpha=realised is None or realised <= alpha)  # fmt: skip
    # today's gate at the same or lower realised error on this very report half (hindsight);
    # nothing to compare with when the certified gate accepted nothing
    best: tuple[float, str] | None = None
    for mean_t in MEAN_GRID if acc else ():
        for min_t in MIN_GRID:
            a2 = [it for it in rep_gated if logprob_gate_accepts(it, mean_t, min_t)]
            r2 = _rate(a2)
            if a2 and r2 is not None and r2 <= max(realised or 0.0, 0.0) + 1e-12:
                share = len(a2) / len(rep)
                if best is None or share > best[0]:
                    best = (share, f"mean>={mean_t}, min>={min_t}")
    out["logprob_gate_edge_share"] = (best[0] if best else 0.0) if acc else None
    out["logprob_gate_threshold"] = best[1] if best else None
    out["no_gate_accepted_wrong"] = _rate(rep_gated)
    return out


def prove(items: Sequence[Mapping[str, Any]], *, splits: int, alpha: float, confidence: float,
          method: str) -> dict[str, Any]:  # fmt: skip
    delta = 1.0 - confidence
    per = [one_split(items, s, alpha, delta, method) for s in range(splits)]
    certified = [p for p in per if p.get("certified")]
    shares = [p["edge_share"] for p in per if "edge_share" in p]
    base = [p["logprob_gate_edge_share"] for p in per if p.get("logprob_gate_edge_share") is not None]
    return {
        "items": len(items), "gated_items": sum(it["gated"] for it in items),
        "edge_correct_rate": (sum(it["correct"] for it in items) / len(items)) if items else None,
        "alpha": alpha, "confidence": confidence, "method": method, "splits": splits,
        "certified_splits": len(certified),
        "splits_within_alpha": sum(bool(p.get("within_alpha")) for p in per),
        "share_within_alpha": sum(bool(p.get("within_alpha")) for p in per) / splits if splits else None,
        "goal_within_alpha_met": splits > 0 and sum(bool(p.get("within_alpha")) for p in per) >= 0.95 * splits,
        "mean_edge_share": statistics.fmean(shares) if shares else None,
        "mean_logprob_gate_edge_share": statistics.fmean(base) if base else None,
        "median_labels_needed": statistics.median([p["labels_needed"] for p in per if p.get("labels_needed")])
        if any(p.get("labels_needed") for p in per) else None,
        "per_split": per,
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, nargs="+", required=True, help="bench bfcl --out dirs (or files)")
    ap.add_argument("--rung", default="smollm2-135m", help="the edge rung whose answers are gated")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--method", default="fixed_sequence", choices=("fixed_sequence", "bonferroni"))
    ap.add_argument("--label", default="ast_valid", help="ast_valid (bench bfcl) or exec_ok (bench agent)")
    ap.add_argument("--drop-signal", nargs="*", default=[], help="gate signals to leave out (ablation)")
    ap.add_argument("--json", type=Path, help="write the full result here")
    args = ap.parse_args(argv)
    if not 0 < args.alpha < 1 or not 0 < args.confidence < 1:
        print("error: --alpha and --confidence must be within (0, 1)", file=sys.stderr)
        return 2
    missing = [str(p) for p in args.results if not (p / "results.jsonl" if p.is_dir() else p).is_file()]
    if missing:
        print(f"error: no results.jsonl in {', '.join(missing)}", file=sys.stderr)
        return 2
    items = load(args.results, args.rung, args.label, args.drop_signal)
    if not items:
        print(f"error: no item has an attempt of rung {args.rung!r}", file=sys.stderr)
        return 2
    res = prove(items, splits=args.splits, alpha=args.alpha, confidence=args.confidence, method=args.method)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f} %"

    print(
        f"items {res['items']} (edge answer passed its contract: {res['gated_items']}); edge right on "
        f"{pct(res['edge_correct_rate'])}; alpha {args.alpha}, confidence {args.confidence}, {args.method}"
    )
    print(
        "| split | certified | model | report accepted | accepted wrong | edge share | logprob gate edge share |"
    )
    print("|---|---|---|---|---|---|---|")
    for p in res["per_split"]:
        print(
            f"| {p['split']} | {'yes' if p.get('certified') else 'no'} | {p.get('model', '-')} | "
            f"{p.get('accepted', 0)} | {pct(p.get('realised_accepted_wrong'))} | {pct(p.get('edge_share'))} | "
            f"{pct(p.get('logprob_gate_edge_share'))} |"
        )
    print(
        f"certified in {res['certified_splits']}/{args.splits} splits; realised accepted-wrong <= alpha in "
        f"{res['splits_within_alpha']}/{args.splits} ({'goal met' if res['goal_within_alpha_met'] else 'goal NOT met'});"
        f" mean edge share {pct(res['mean_edge_share'])} vs today's gate at the same realised error "
        f"{pct(res['mean_logprob_gate_edge_share'])}; median labels still needed {res['median_labels_needed']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
