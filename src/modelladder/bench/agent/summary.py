"""``summary.json`` of ``bench agent``: pure functions over the records of ``results.jsonl``.

Steps suite (per category and overall): ``accuracy`` (execution-equivalence, the headline),
``name_accuracy``, ``exact_accuracy``, ``call_step_accuracy`` (steps where a call is due) and
``end_of_turn_accuracy`` (steps where stopping is right), the shared figures of
:func:`modelladder.bench.summary.summarize` (latency, edge share, escalations, cost per 1k
steps, accepted-wrong rate for the ladder), and ``prefix_reuse`` (share of prompt tokens the
backend took from its KV cache).

Loops suite: ``task_success`` (BFCL's official multi_turn_checker), hops per workflow (mean,
p50, p95), workflow wall time (p50, p95), ``edge_hop_share``, ``cost_per_1k_workflows_usd``,
failures by the checker's error type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from modelladder.bench.summary import _ratio, percentile, summarize

__all__ = [
    "REFERENCE_LABEL",
    "Record",
    "build_agent_summary",
    "by_category",
    "loop_figures",
    "step_figures",
]

Record = Mapping[str, Any]
REFERENCE_LABEL = (
    "reference = the benchmark's gold calls (an oracle standing in for a frontier model; its latency and "
    "price come from the fleet file). Not a model: no figure that includes it is a model's accuracy."
)


def _share(recs: Sequence[Record], key: str) -> float | None:
    return _ratio(sum(1 for r in recs if r.get(key)), len(recs))


def step_figures(recs: Sequence[Record], *, ladder: bool) -> dict[str, Any]:
    out = summarize([{**r, "ast_valid": r.get("ok")} for r in recs], ladder=ladder)
    calls = [r for r in recs if not r.get("end_of_turn")]
    ends = [r for r in recs if r.get("end_of_turn")]
    prompt = sum(int(r.get("prompt_tokens") or 0) for r in recs)
    out.update(
        name_accuracy=_share(recs, "name_ok"), exact_accuracy=_share(recs, "exact_ok"),
        call_steps=len(calls), call_step_accuracy=_share(calls, "ok"),
        end_of_turn_steps=len(ends), end_of_turn_accuracy=_share(ends, "ok"),
        prefix_reuse=_ratio(sum(int(r.get("cached_prompt_tokens") or 0) for r in recs), prompt),
        failures_by_reason=dict(Counter(str(r.get("reason")).split(":")[0] for r in recs if not r.get("ok"))),
    )  # fmt: skip
    return out


def loop_figures(recs: Sequence[Record]) -> dict[str, Any]:
    n = len(recs)
    hops = [int(r.get("hops") or 0) for r in recs]
    wall = [float(r.get("latency_s") or 0.0) for r in recs]
    cost = sum(float(r.get("cost_usd") or 0.0) for r in recs)
    return {
        "n": n, "task_success": _share(recs, "ok"), "correct": sum(1 for r in recs if r.get("ok")),
        "hops_mean": _ratio(sum(hops), n), "hops_p50": percentile(hops, 50), "hops_p95": percentile(hops, 95),
        "p50_latency_s": percentile(wall, 50), "p95_latency_s": percentile(wall, 95),
        "edge_hop_share": _ratio(sum(int(r.get("edge_hops") or 0) for r in recs), sum(hops)),
        "cost_usd": cost, "cost_per_1k_workflows_usd": _ratio(cost * 1000.0, n),
        "force_terminated": sum(1 for r in recs if r.get("force_terminated")),
        "failures_by_type": dict(Counter(str(r.get("error_type")) for r in recs if not r.get("ok"))),
    }  # fmt: skip


def by_category(recs: Sequence[Record], categories: Sequence[str], figures: Any) -> dict[str, Any]:
    return {"categories": {c: figures([r for r in recs if r["category"] == c]) for c in categories},
            "overall": figures(list(recs))}  # fmt: skip


def build_agent_summary(cfg: Any, run: Mapping[str, Any], prepared: Any, records: Sequence[Record],
                        wanted: int) -> dict[str, Any]:  # fmt: skip
    from modelladder.bench.agent.online import learning_curve
    from modelladder.bench.runner import _bfcl_version, machine_info

    ladder = cfg.mode == "ladder"
    if cfg.suite == "steps":
        figs = by_category(records, cfg.categories, lambda rs: step_figures(rs, ladder=ladder))
    else:
        figs = by_category(records, cfg.categories, loop_figures)
    rungs = [{**asdict(r), "is_reference": r.backend == "reference"} for r in prepared.fleet.rungs]
    return {
        "benchmark": "BFCL v4 multi-turn", "bfcl_eval": _bfcl_version(), "run": run.get("name"),
        "suite": cfg.suite, "mode": cfg.mode, "categories_requested": list(cfg.categories), "limit": cfg.limit,
        "step_limit": cfg.step_limit, "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(), "fleet": {"source": prepared.fleet.source, "rungs": rungs,
                                             "policy": asdict(prepared.policy)},
        "notes": list(prepared.notes), "complete": len(records) == wanted, "records_expected": wanted,
        "labels": {"reference": REFERENCE_LABEL} if any(r["is_reference"] for r in rungs) else {},
        **figs,
        "online": {"order_seed": cfg.seed, "update_every": cfg.update_every, "learner": None,
                   "curve": learning_curve(records, cfg.update_every)} if cfg.online else None,
    }  # fmt: skip
