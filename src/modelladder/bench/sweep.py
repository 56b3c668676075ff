"""Gate calibration from one pass: replay the ladder's decision at many thresholds.

Why a replay is exact: the ladder's choices are pure functions
(:func:`modelladder.ladder.policy.next_action` picks the next rung, :func:`judge` accepts or
rejects an attempt) of the policy and of each attempt's verdict, truncation, backend error
and confidence signals. A rung's generation does not depend on the policy (greedy decoding,
same prompt). So one generation per rung per item, stored with those signals and its AST
result, answers "what would the ladder have done at thresholds X" for every X with zero
model calls: this module rebuilds the :class:`Attempt` objects and asks the same functions.
(Exact as long as the policy has no ``latency_budget_s``: a per-attempt timeout would have
changed the generation itself; replayed elapsed time is the sum of stored latencies.)

Calibration never looks at the items it reports on: items are split 50/50 by a hash of
their id (:func:`modelladder.bench.bfcl.data.split_half`); the threshold is chosen on the
``calibrate`` half and its figures are reported on the ``report`` half.

AIQ (the area under the non-decreasing cost-quality hull) and the other statistics live in
:mod:`modelladder.stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelladder.bench.bfcl.data import AST_CATEGORIES
from modelladder.bench.summary import summarize, summarize_by_category
from modelladder.contracts.base import Verdict
from modelladder.fleet import Rung
from modelladder.ladder.outcome import Attempt, Confidence
from modelladder.ladder.policy import Policy, Stop, eligible_rungs, judge, next_action
from modelladder.stats import aiq, auc, nondecreasing_hull

__all__ = [
    "GOAL_ACCEPTED_WRONG", "GOAL_EDGE_SHARE", "GridPoint", "MEAN_GRID", "MIN_GRID", "aiq_summary",
    "attempt_from_stored", "ladder_rungs", "no_gate", "replay", "replay_item", "signal_auc",
    "single_rung_policy", "sweep",
]  # fmt: skip

# Threshold grids (log-probabilities; None = that half of the gate off). Dense near 0, where
# a small model's confident answers sit (SmolLM2-135M: mean value-token logprob -0.01..-0.6).
MEAN_GRID: tuple[float | None, ...] = (
    None, -3.0, -2.0, -1.5, -1.0, -0.8, -0.6, -0.5, -0.4, -0.3, -0.25, -0.2, -0.15, -0.1,
    -0.07, -0.05, -0.03, -0.02, -0.01, -0.005, -0.001,
)  # fmt: skip
MIN_GRID: tuple[float | None, ...] = (
    None, -10.0, -5.0, -3.0, -2.0, -1.5, -1.0, -0.7, -0.5, -0.3, -0.2, -0.1, -0.05, -0.02, -0.01,
)  # fmt: skip

# The goal for the ladder (report half): accuracy >= target x top rung's, at least
# this share answered at the edge, at most this accepted-wrong rate.
GOAL_EDGE_SHARE = 0.60
GOAL_ACCEPTED_WRONG = 0.05


# --------------------------------------------------------------------------- replay


def attempt_from_stored(stored: Mapping[str, Any], index: int) -> Attempt:
    """Rebuild what :func:`judge` reads of an attempt from its stored form."""
    verdict = None
    if stored.get("ok") is not None:
        verdict = Verdict(ok=bool(stored["ok"]), reason=stored.get("verdict_reason"))
    confidence = None
    if stored.get("n_value_tokens") is not None:
        confidence = Confidence(
            stored.get("mean_logprob"), stored.get("min_logprob"), int(stored["n_value_tokens"])
        )
    return Attempt(
        index=index,
        rung=stored["rung"],
        placement=stored["placement"],
        verdict=verdict,
        confidence=confidence,
        latency_s=float(stored.get("latency_s") or 0.0),
        cost_usd=float(stored.get("cost_usd") or 0.0),
        finish_reason=stored.get("finish_reason"),
        error=stored.get("error"),
    )


def replay_item(item: Mapping[str, Any], rungs: Sequence[Rung], policy: Policy) -> dict[str, Any]:
    """The ladder's decision for one item at ``policy``, from its stored per-rung attempts
    (``item["rungs"][name]``). Returns a record with the fields :mod:`summary` reads."""
    stored_by_rung: Mapping[str, Mapping[str, Any]] = item["rungs"]
    attempts: list[Attempt] = []
    chain: list[str] = []
    elapsed = 0.0
    accepted: Mapping[str, Any] | None = None
    stop_reason = ""
    while True:
        action = next_action(policy, list(rungs), attempts, elapsed)
        if isinstance(action, Stop):
            stop_reason = action.reason
            break
        stored = stored_by_rung.get(action.rung.name)
        if stored is None:
            raise KeyError(f"item {item.get('id')!r} has no stored attempt for rung {action.rung.name!r}")
        attempt = attempt_from_stored(stored, len(attempts))
        attempts.append(attempt)
        chain.append(action.rung.name)
        elapsed += attempt.latency_s
        reason = judge(attempt, policy)
        if reason is None:
            attempt.accepted = True
            accepted = stored
            break
        attempt.escalation_reason = reason
    placement = accepted["placement"] if accepted is not None else None
    valid = bool(accepted is not None and accepted.get("ast_valid"))
    return {
        "id": item.get("id"),
        "category": item["category"],
        "split": item.get("split"),
        "outcome": "resolved" if accepted is not None else "unresolved",
        "reason": stop_reason or None,
        "rung": accepted["rung"] if accepted is not None else None,
        "placement": placement,
        "chain": chain,
        "ast_valid": valid,
        "latency_s": sum(a.latency_s for a in attempts),
        "cost_usd": sum(a.cost_usd for a in attempts),
        "escalations": [a.escalation_reason for a in attempts if a.escalation_reason],
        "accepted_wrong": placement == "edge" and not valid,
    }


def replay(items: Iterable[Mapping[str, Any]], rungs: Sequence[Rung], policy: Policy) -> list[dict[str, Any]]:
    """:func:`replay_item` over many items."""
    return [replay_item(it, rungs, policy) for it in items]


def no_gate(policy: Policy) -> Policy:
    """``policy`` with the confidence gate switched off (contract and errors still reject)."""
    return Policy(**{**policy.__dict__, "min_mean_logprob": None, "min_token_logprob": None,
                     "min_decision_logprob": None})  # fmt: skip


def single_rung_policy(policy: Policy, rung: str) -> Policy:
    """Only ``rung``, no confidence gate: the per-model row (what that model alone scores)."""
    return Policy(**{**no_gate(policy).__dict__, "first_rung": rung, "max_rung": rung, "edge_only": False})


def ladder_rungs(policy: Policy, rungs: Sequence[Rung]) -> list[Rung]:
    """The rungs a ladder run climbs, smallest first (what a sweep must generate per item)."""
    return eligible_rungs(no_gate(policy), list(rungs))


# --------------------------------------------------------------------------- sweep


@dataclass(frozen=True)
class GridPoint:
    min_mean_logprob: float | None
    min_token_logprob: float | None

    def label(self) -> str:
        def f(v: float | None) -> str:
            return "off" if v is None else f"{v:g}"

        return f"mean>={f(self.min_mean_logprob)}, min>={f(self.min_token_logprob)}"


_KEEP = (
    "n", "accuracy", "correct", "cost_usd", "cost_per_1k_steps_usd", "edge_share", "escalation_rate",
    "accepted_wrong_rate", "accepted_wrong_of_all", "p50_latency_s", "p95_latency_s", "answered_by",
)  # fmt: skip


def _compact(s: Mapping[str, Any]) -> dict[str, Any]:
    return {k: s.get(k) for k in _KEEP}


def sweep(
    items: Sequence[Mapping[str, Any]],
    rungs: Sequence[Rung],
    base_policy: Policy,
    *,
    target: float = 0.95,
    mean_grid: Sequence[float | None] = MEAN_GRID,
    min_grid: Sequence[float | None] = MIN_GRID,
    categories: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Evaluate the ladder at every grid point on both halves and choose a threshold.

    ``items``: records with ``rungs`` (stored per-rung attempts) and ``split``. The chosen
    point reaches ``target`` x the top rung's accuracy on the calibrate half at the lowest
    cost (ties: higher accuracy, then more edge answers); its figures are then reported on
    the report half, with the issue's goal checks.
    """
    if not 0 < target <= 1:
        raise ValueError("target must be within (0, 1]")
    rungs = list(rungs)
    climb = ladder_rungs(base_policy, rungs)
    if not climb:
        raise ValueError("no eligible rung to sweep")
    top = climb[-1].name
    halves = {h: [it for it in items if it.get("split") == h] for h in ("calibrate", "report")}

    singles: dict[str, dict[str, Any]] = {}
    for r in climb:
        pol = single_rung_policy(base_policy, r.name)
        singles[r.name] = {
            "placement": r.placement,
            "backend": r.backend,
            **{h: _compact(summarize(replay(its, rungs, pol), ladder=False)) for h, its in halves.items()},
        }

    points: list[dict[str, Any]] = []
    for mean_t in mean_grid:
        for min_t in min_grid:
            gp = GridPoint(mean_t, min_t)
            pol = Policy(**{**base_policy.__dict__, "min_mean_logprob": mean_t, "min_token_logprob": min_t})
            points.append(
                {
                    "min_mean_logprob": mean_t,
                    "min_token_logprob": min_t,
                    "label": gp.label(),
                    **{
                        h: _compact(summarize(replay(its, rungs, pol), ladder=True))
                        for h, its in halves.items()
                    },
                }
            )

    top_cal = singles[top]["calibrate"]["accuracy"]
    top_rep = singles[top]["report"]["accuracy"]
    chosen: dict[str, Any] | None = None
    reached = False
    if top_cal is not None and halves["calibrate"]:
        need = target * top_cal
        ok = [p for p in points if (p["calibrate"]["accuracy"] or 0.0) >= need - 1e-12]
        reached = bool(ok)
        pool = ok or points

        def cheapest(p: Mapping[str, Any]) -> tuple[float, float, float]:
            c = p["calibrate"]
            return (c["cost_per_1k_steps_usd"], -c["accuracy"], -(c["edge_share"] or 0))

        def most_accurate(p: Mapping[str, Any]) -> tuple[float, float]:
            c = p["calibrate"]
            return (-c["accuracy"], c["cost_per_1k_steps_usd"])

        key: Callable[[Mapping[str, Any]], tuple[float, ...]] = cheapest if ok else most_accurate
        best: Mapping[str, Any] = min(pool, key=key)
        chosen = dict(best)

    result: dict[str, Any] = {
        "rungs": [r.name for r in climb],
        "top_rung": top,
        "top_is_reference": climb[-1].backend == "reference",
        "target": target,
        "split_sizes": {h: len(its) for h, its in halves.items()},
        "single_rungs": singles,
        "grid": points,
        "chosen": None,
    }
    if chosen is not None:
        pol = Policy(
            **{
                **base_policy.__dict__,
                "min_mean_logprob": chosen["min_mean_logprob"],
                "min_token_logprob": chosen["min_token_logprob"],
            }
        )
        report_records = replay(halves["report"], rungs, pol)
        top_pol = single_rung_policy(base_policy, top)

        def goal(recs: Sequence[Mapping[str, Any]], scope: Sequence[str]) -> dict[str, Any]:
            """The issue's goal checks on the report half, over the categories in ``scope``."""
            mine = [r for r in recs if r["category"] in scope]
            s = summarize(mine, ladder=True)
            top_acc = summarize(
                replay([it for it in halves["report"] if it["category"] in scope], rungs, top_pol),
                ladder=False,
            )["accuracy"]
            ratio = (s["accuracy"] / top_acc) if top_acc and s["accuracy"] is not None else None
            return {
                "categories": list(scope),
                "n": s["n"],
                "accuracy": s["accuracy"],
                "top_accuracy": top_acc,
                "accuracy_vs_top": ratio,
                "accuracy_ok": ratio is not None and ratio >= target,
                "edge_share": s["edge_share"],
                "edge_share_ok": (s["edge_share"] or 0) >= GOAL_EDGE_SHARE,
                "accepted_wrong_rate": s["accepted_wrong_rate"],
                "accepted_wrong_ok": s["accepted_wrong_rate"] is not None
                and s["accepted_wrong_rate"] <= GOAL_ACCEPTED_WRONG,
            }

        present = list(dict.fromkeys(r["category"] for r in report_records))
        ast_scope = [c for c in present if c in AST_CATEGORIES]
        result["chosen"] = {
            **chosen,
            "reached_target_on_calibrate": reached,
            "report_by_category": summarize_by_category(report_records, ladder=True, categories=categories),
            "report_accuracy_vs_top": (chosen["report"]["accuracy"] / top_rep)
            if top_rep and chosen["report"]["accuracy"] is not None
            else None,
            # over every category run, and over the AST categories only (the issue states its
            # goal "across the non-live and live AST categories"; irrelevance is reported apart)
            "goal": goal(report_records, present),
            "goal_ast": goal(report_records, ast_scope) if ast_scope and ast_scope != present else None,
        }
    result["aiq"] = aiq_summary(result, half="report")
    result["signal_auc"] = {
        r.name: {h: signal_auc(its, r.name) for h, its in halves.items()}
        for r in climb
        if r.placement == "edge"
    }
    return result


def signal_auc(items: Iterable[Mapping[str, Any]], rung: str) -> dict[str, Any]:
    """How well each confidence signal separates a rung's right answers from its wrong ones,
    over its answers that passed the contract and carry value tokens (what the gate sees).
    0.5 is no signal at all; also counts the answers the gate cannot see (no value tokens,
    e.g. a decline ``[]``) and how many of those are wrong."""
    right: dict[str, list[float]] = {"mean_logprob": [], "min_logprob": []}
    wrong: dict[str, list[float]] = {"mean_logprob": [], "min_logprob": []}
    blind = blind_wrong = 0
    for it in items:
        a = (it.get("rungs") or {}).get(rung)
        if not a or not a.get("ok") or a.get("finish_reason") == "length" or a.get("error"):
            continue
        if not a.get("n_value_tokens"):
            blind += 1
            blind_wrong += not a.get("ast_valid")
            continue
        side = right if a.get("ast_valid") else wrong
        for k in side:
            side[k].append(float(a[k]))
    return {
        "n_right": len(right["mean_logprob"]),
        "n_wrong": len(wrong["mean_logprob"]),
        "auc_mean_logprob": auc(right["mean_logprob"], wrong["mean_logprob"]),
        "auc_min_logprob": auc(right["min_logprob"], wrong["min_logprob"]),
        "no_value_tokens": blind,
        "no_value_tokens_wrong": blind_wrong,
    }


def aiq_summary(sweep_result: Mapping[str, Any], half: str = "report") -> dict[str, Any]:
    """AIQ of the single rungs (RouterBench's zero router: random mixes of whole models) and
    of the ladder's threshold points, over one common cost range (cost per 1k steps)."""
    singles = [
        (s[half]["cost_per_1k_steps_usd"], s[half]["accuracy"])
        for s in sweep_result["single_rungs"].values()
        if s[half]["accuracy"] is not None
    ]
    ladder = [
        (p[half]["cost_per_1k_steps_usd"], p[half]["accuracy"])
        for p in sweep_result["grid"]
        if p[half]["accuracy"] is not None
    ]
    allc = [c for c, _ in singles + ladder]
    if not allc:
        return {
            "half": half,
            "cost_range": None,
            "single_rungs": None,
            "ladder": None,
            "ladder_with_rungs": None,
        }
    lo, hi = min(allc), max(allc)
    return {
        "half": half,
        "cost_range": [lo, hi],
        "single_rungs": aiq(singles, lo, hi),
        "ladder": aiq(ladder, lo, hi),
        "ladder_with_rungs": aiq(singles + ladder, lo, hi),
        "hull_single_rungs": nondecreasing_hull(singles),
        "hull_ladder": nondecreasing_hull(ladder),
    }
