"""Champion and challenger at the same certified alpha (issue 15, item 9).

Comparing a specialist with today's first rung under *today's* gate thresholds flatters
whichever rung those thresholds were tuned for, and says nothing about the error a user will
live with. So each rung gets its own calibrated gate, fitted and certified on the holdout
exactly as ``gate calibrate`` does on traces (:func:`modelladder.learning.calibrate.fit_and_certify`),
and the two are compared on the same held-back examples at the same ``alpha``: how many steps
each keeps at the edge with its accepted-wrong rate certified <= alpha, what those answers
get wrong, and what the steps cost with the escalated ones paid at the teacher's price.

The holdout is split by a hash of each example's key (the same split for both rungs): one
half fits each rung's gate model, half of the other certifies its threshold, and the figures
are read on the rest, which neither saw. A rung whose gate cannot certify alpha keeps nothing
at the edge (it escalates everything): that is what its calibrated gate would do in production.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from modelladder.learning.calibrate import fit_and_certify
from modelladder.learning.dataset import Example
from modelladder.learning.features import Row

__all__ = ["compare_certified", "part"]


def part(key: str) -> int:
    """0 (fit), 1 (certify) or 2-3 (report) by a hash of the example key."""
    return hashlib.sha256(f"promote:{key}".encode()).digest()[0] & 3


def _row(features: Mapping[str, Any]) -> Row:
    return Row(dict(features["numeric"]), str(features["tool"]), str(features["rung"]))


def _side(
    outs: Mapping[str, Any], alpha: float, delta: float, escalation: Mapping[str, Any]
) -> dict[str, Any]:
    """One rung's gate, fitted and certified on its parts of the holdout, read on the report part."""

    def examples(p: int) -> list[Example]:
        return [Example(k, 0, None, _row(o.features), o.correct, "checker", o.accepted)
                for k, o in outs.items() if part(k) == p and o.features is not None]  # fmt: skip

    train, held = examples(0), examples(1)
    report = {k: o for k, o in outs.items() if part(k) >= 2}
    out: dict[str, Any] = {"n_fit": len(train), "n_certify": len(held), "n_report": len(report)}
    if not train or not held or not report:
        return {**out, "certified": False, "why": "a part of the holdout is empty", "edge_share": 0.0}
    try:
        model, cert = fit_and_certify(train, held, alpha=alpha, delta=delta, method="fixed_sequence")
    except ValueError as exc:  # e.g. one class only and no signal to stand in
        return {**out, "certified": False, "why": str(exc), "edge_share": 0.0}
    kept = [o for o in report.values() if cert.certified and cert.threshold is not None and o.features is not None
            and model.score(_row(o.features)) >= cert.threshold]  # fmt: skip
    wrong = sum(not o.correct for o in kept)
    n = len(report)
    escalated = n - len(kept)
    cost = statistics.fmean(o.cost_usd for o in report.values()) + escalated / n * float(
        escalation.get("cost_usd", 0.0)
    )
    right = sum(o.correct for o in kept) + escalated * float(escalation.get("accuracy", 1.0))
    return {
        **out, "model": model.kind, "cv_auc": model.cv_auc.get("logistic"), "certified": cert.certified,
        "threshold": cert.threshold, "upper_bound": cert.upper_bound, "labels_needed": cert.labels_needed,
        "edge_share": len(kept) / n, "kept": len(kept), "accepted_wrong": wrong,
        "accepted_wrong_rate": wrong / len(kept) if kept else 0.0,
        "cost_per_1k_steps_usd": 1000 * cost, "ladder_accuracy": right / n,
    }  # fmt: skip


def compare_certified(
    champion: Mapping[str, Any],
    candidate: Mapping[str, Any],
    *,
    alpha: float,
    confidence: float,
    escalation: Mapping[str, Any],
    keys: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Both rungs' outcomes (example key -> :class:`~modelladder.distill.evaluate.Outcome`) at
    the same certified ``alpha``; ``keys``: the examples of the view compared (default all)."""
    pick = set(keys) if keys is not None else None

    def only(outs: Mapping[str, Any]) -> dict[str, Any]:
        return {k: o for k, o in outs.items() if pick is None or k in pick}

    delta = 1.0 - confidence
    return {
        "alpha": alpha, "confidence": confidence,
        "champion": _side(only(champion), alpha, delta, escalation),
        "candidate": _side(only(candidate), alpha, delta, escalation),
    }  # fmt: skip
