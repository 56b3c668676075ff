"""``--online``: items arrive in a fixed shuffled order, as traffic would, and whatever the
ladder learns from traces is updated every N steps from the traces seen so far.

:class:`OnlineLearner` calls ``update(history)`` every ``update_every`` records with exactly
the records that came before, never a later one (a test holds it to that), and the learning
curve is measured over arrival order. Without ``--learn-gate`` nothing learns and the curve
is the baseline a learner has to beat; with it, :class:`GateLearner` re-calibrates the step's
gate and its ex-ante skip from the run's own trace store (labels so far: the checker's on
accepted answers, the teacher's on escalated ones), which the ladder's ``StoreGate`` applies
to the steps after it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modelladder.bench.summary import _ratio

__all__ = ["GateLearner", "OnlineLearner", "Update", "learning_curve"]

Update = Callable[[Sequence[Mapping[str, Any]]], None]


class OnlineLearner:
    def __init__(self, update_every: int, update: Update | None = None):
        self.update_every = update_every
        self._update = update
        self.history: list[Mapping[str, Any]] = []
        self.updates = 0

    def observe(self, record: Mapping[str, Any], *, position: int) -> None:
        """Record one finished step; every ``update_every`` of them, update from the past only."""
        self.history.append(record)
        if len(self.history) % self.update_every == 0:
            self.updates += 1
            if self._update is not None:
                self._update(tuple(self.history))


class GateLearner:
    """The ``update`` of ``--learn-gate``: calibrate step ``key``'s gate (one bound over every
    tool set the step has had) and its skip predictor from the store; each update is logged in
    ``events`` (labels seen, certified or not, threshold, share kept on held-out labels)."""

    def __init__(
        self, store: Any, key: str, *, alpha: float, confidence: float = 0.95, max_lost: float = 0.1
    ):
        self.store, self.key = store, key
        self.alpha, self.confidence, self.max_lost = alpha, confidence, max_lost
        self.events: list[dict[str, Any]] = []

    def __call__(self, history: Sequence[Mapping[str, Any]]) -> None:
        from modelladder.learning import CalibrationError, calibrate_skip, calibrate_step

        event: dict[str, Any] = {"seen": len(history)}
        try:
            version, cert = calibrate_step(self.store, self.key, alpha=self.alpha, confidence=self.confidence,
                                           all_contracts=True)  # fmt: skip
            event["gate"] = {"version": version, "certified": cert.certified, "threshold": cert.threshold,
                             "held_out": cert.n_held_out, "kept_share": cert.accept_share,
                             "labels_needed": cert.labels_needed}  # fmt: skip
        except CalibrationError as exc:
            event["gate"] = {"error": str(exc)}
        try:
            version, cert = calibrate_skip(
                self.store, self.key, max_lost=self.max_lost, confidence=self.confidence
            )
            event["skip"] = {"version": version, "certified": cert.certified, "threshold": cert.threshold,
                             "held_out": cert.n_held_out, "skip_share": cert.accept_share}  # fmt: skip
        except CalibrationError as exc:
            event["skip"] = {"error": str(exc)}
        self.events.append(event)


def learning_curve(records: Sequence[Mapping[str, Any]], every: int) -> list[dict[str, Any]]:
    """Cumulative figures after every ``every`` records (and at the end), in arrival order:
    edge share, accepted-wrong rate (of edge answers; steps only), accuracy (step accuracy or
    task success), cost per 1k records."""
    points = []
    for n in sorted({*range(every, len(records) + 1, every), len(records)} - {0}):
        seen = records[:n]
        edge = [r for r in seen if r.get("placement") == "edge"]
        cost = sum(float(r.get("cost_usd") or 0.0) for r in seen)
        if seen and "hops" in seen[0]:  # workflows: the share of hops answered at the edge
            edge_share = _ratio(sum(r["edge_hops"] for r in seen), sum(r["hops"] for r in seen))
        else:
            edge_share = _ratio(len(edge), n)
        points.append({
            "seen": n,
            "accuracy": _ratio(sum(1 for r in seen if r.get("ok")), n),
            "edge_share": edge_share,
            "accepted_wrong_rate": _ratio(sum(1 for r in edge if not r.get("ok")), len(edge)),
            "cost_per_1k_usd": cost * 1000.0 / n,
        })  # fmt: skip
    return points
