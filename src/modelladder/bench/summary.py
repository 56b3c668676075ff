"""Benchmark figures from per-item result records: pure functions, no I/O.

A record is one line of ``results.jsonl`` (see :mod:`modelladder.bench.runner`) or one item
of a replayed gate decision (:mod:`modelladder.bench.sweep`); both carry the same fields:
``category``, ``ast_valid``, ``latency_s``, ``cost_usd``, ``placement`` (of the rung that
answered, ``None`` if none did), ``rung``, ``escalations`` (the reasons the ladder moved
past attempts), ``accepted_wrong`` (ladder runs: an edge answer passed the gate but fails
the AST checker), ``outcome``.

Definitions (kept here, next to the arithmetic, so the docs and the numbers cannot drift):

* ``accuracy``: share of items whose final answer passes BFCL's AST checker (an item with no
  answer fails). Overall: items pooled (micro); ``accuracy_macro`` is the unweighted mean of
  the per-category accuracies, the way BFCL averages categories into its summary columns.
* ``p50_latency_s`` / ``p95_latency_s``: per-item wall time over all its attempts, percentile
  with linear interpolation between closest ranks (numpy's default method).
* ``edge_share``: share of items answered (accepted) by an edge rung.
* ``escalation_rate``: share of items where at least one attempt was rejected (for a single
  rung run: rejected by the contract -- where a ladder would have escalated).
* ``escalations_by_reason``: rejected attempts counted by reason (``contract:parse_error``,
  ``low_confidence:mean``, ``truncated``, ``backend:timeout``...).
* ``cost_usd``: sum over all attempts (edge: compute seconds x price; cloud: tokens x list
  price); ``cost_per_1k_steps_usd`` = cost / n x 1000.
* ``accepted_wrong_rate`` (ladder runs only): of the items an edge rung answered (passed the
  contract and the confidence gate), the share that fail the AST checker -- how far the gate
  can be trusted. ``accepted_wrong_of_all`` is the same count over all items.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from modelladder.stats import percentile

__all__ = ["Record", "summarize", "summarize_by_category"]

Record = Mapping[str, Any]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def summarize(records: Iterable[Record], *, ladder: bool) -> dict[str, Any]:
    """The figures for one group of items (see the module docstring for definitions)."""
    recs = list(records)
    n = len(recs)
    valid = sum(1 for r in recs if r.get("ast_valid"))
    latencies = [float(r.get("latency_s") or 0.0) for r in recs]
    cost = sum(float(r.get("cost_usd") or 0.0) for r in recs)
    edge = [r for r in recs if r.get("placement") == "edge"]
    reasons: Counter[str] = Counter()
    escalated = 0
    for r in recs:
        esc = list(r.get("escalations") or ())
        reasons.update(esc)
        escalated += bool(esc)
    answered_by: Counter[str] = Counter(str(r.get("rung")) for r in recs if r.get("rung"))
    out: dict[str, Any] = {
        "n": n,
        "accuracy": _ratio(valid, n),
        "correct": valid,
        "p50_latency_s": percentile(latencies, 50),
        "p95_latency_s": percentile(latencies, 95),
        "edge_share": _ratio(len(edge), n),
        "escalation_rate": _ratio(escalated, n),
        "escalations_by_reason": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "cost_usd": cost,
        "cost_per_1k_steps_usd": _ratio(cost * 1000.0, n),
        "answered_by": dict(sorted(answered_by.items())),
        "unanswered": sum(1 for r in recs if not r.get("rung")),
        "accepted_wrong_rate": None,
        "accepted_wrong_of_all": None,
    }
    if ladder:
        wrong = sum(1 for r in edge if r.get("accepted_wrong"))
        out["accepted_wrong_rate"] = _ratio(wrong, len(edge))
        out["accepted_wrong_of_all"] = _ratio(wrong, n)
        out["accepted_wrong"] = wrong
    return out


def summarize_by_category(
    records: Iterable[Record], *, ladder: bool, categories: Sequence[str] | None = None
) -> dict[str, Any]:
    """``{"categories": {c: figures}, "overall": figures}``; overall adds ``accuracy_macro``.

    ``categories`` fixes the order (and includes empty categories as ``n = 0``); by default
    the categories present, in order of first appearance.
    """
    recs = list(records)
    order = list(categories) if categories is not None else list(dict.fromkeys(r["category"] for r in recs))
    per = {c: summarize([r for r in recs if r["category"] == c], ladder=ladder) for c in order}
    overall = summarize(recs, ladder=ladder)
    accs = [s["accuracy"] for s in per.values() if s["accuracy"] is not None]
    overall["accuracy_macro"] = sum(accs) / len(accs) if accs else None
    return {"categories": per, "overall": overall}
