"""The dashboard's numbers: pure functions over runs and labels read from the trace store.

Why pure functions over :class:`~modelladder.traces.records.RunRecord` lists rather than SQL:
the same figures must come out of SQLite and PostgreSQL, the tenant filter is applied once
where the runs are read (:func:`read_window`), and every figure here is testable with plain
records. The cost is reading each run; the window is bounded (``limit``, newest first) and the
page says when it is cut.

Definitions (the page repeats them):

* **edge share**: runs whose accepted answer came from an edge rung, over all runs (an
  unresolved run counts as not on the edge).
* **escalations by reason**: every attempt the ladder moved past, by its ``escalation_reason``.
* **accepted-wrong**: of the accepted answers that carry a label, the share labelled wrong.
  The label in force on an answer is the newest of: a ``correct`` label on the accepted
  attempt, or a ``success`` label on the whole run (feedback). Value < 0.5 is wrong.
* **frontier-only cost**: what the same runs would have cost had each gone straight to the
  frontier rung (the largest rung of the fleet; without a fleet, the priciest cloud rung seen).
  Per run: the recorded cost of its attempt on that rung when it has one (*measured*); else
  the fleet's list price of that rung applied to the run's tokens (*priced*: first attempt's
  prompt tokens as the first answering rung counted them, accepted or last attempt's
  completion tokens); else, without a fleet, the
  mean measured frontier cost of the step (*imputed*); else *missing* (left out of the sum).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from modelladder.gateway.traces_api import TENANT_TAG
from modelladder.stats import percentile
from modelladder.traces import TraceStore, UnknownRunError
from modelladder.traces.labels import LabelRecord
from modelladder.traces.records import AttemptRecord, RunRecord

__all__ = [
    "Frontier", "Window", "accepted_label", "edge_share_over_time", "read_window", "run_view",
    "step_detail", "step_summary", "steps_overview", "wilson",
]  # fmt: skip

DEFAULT_LIMIT = 5000
# bucket widths for edge share over time, the smallest giving at most MAX_BUCKETS buckets
_WIDTHS_S = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400)
MAX_BUCKETS = 48

Pricer = Callable[[int, int, float], float]  # (prompt_tokens, completion_tokens, latency_s) -> USD


@dataclass(frozen=True)
class Frontier:
    """The rung "frontier-only" means, and its list price when a fleet is known."""

    rung: str
    price: Pricer | None = None
    source: str = "fleet"  # "fleet": the fleet's largest rung; "store": the priciest cloud rung seen


@dataclass(frozen=True)
class Window:
    """The runs the dashboard looks at: one tenant's (or all), newest first, at most ``limit``."""

    runs: list[RunRecord]
    labels: dict[str, list[LabelRecord]]  # run id -> its labels, oldest first
    limit: int
    total: int  # runs visible to the caller in the store (may exceed len(runs))

    @property
    def truncated(self) -> bool:
        return self.total > len(self.runs)


def read_window(store: TraceStore, tenant: str | None, limit: int = DEFAULT_LIMIT) -> Window:
    """Read the caller's runs (``tenant=None``: every run) with their attempts and labels."""
    tag = (TENANT_TAG, tenant) if tenant is not None else None
    summaries = store.list_runs(limit=limit, tag=tag)
    total = store.count_runs(tag=tag)
    runs: list[RunRecord] = []
    for s in summaries:
        try:
            runs.append(store.get_run(s.run_id))
        except UnknownRunError:  # pragma: no cover - runs are never deleted; be safe anyway
            continue
    ids = {r.run_id for r in runs}
    labels: dict[str, list[LabelRecord]] = defaultdict(list)
    for label in store.labels():
        if label.run_id in ids:  # only labels of runs the caller may see
            labels[label.run_id].append(label)
    return Window(runs, dict(labels), limit, total)


def owned_run(store: TraceStore, tenant: str | None, run_id: str) -> RunRecord | None:
    """The run if the caller may see it, else ``None`` (another tenant's run looks missing)."""
    try:
        run = store.get_run(run_id)
    except UnknownRunError:
        return None
    if tenant is not None and run.tags.get(TENANT_TAG) != tenant:
        return None
    return run


# -- single figures -----------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of ``k`` successes in ``n`` (95 % by default); ``None`` for n=0."""
    if n <= 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def accepted_label(run: RunRecord, labels: Sequence[LabelRecord]) -> LabelRecord | None:
    """The label in force on the run's accepted answer (see the module docstring)."""
    accepted = run.accepted
    if accepted is None:
        return None
    found = None
    for label in labels:  # oldest first: the last match is the newest
        on_answer = label.attempt_idx == accepted.index and label.kind == "correct"
        on_run = label.attempt_idx is None and label.kind == "success"
        if on_answer or on_run:
            found = label
    return found


def _on_edge(run: RunRecord) -> bool:
    return run.outcome == "resolved" and run.placement == "edge"


def _ok(a: AttemptRecord) -> bool:
    return a.error is None


def pick_frontier(runs: Iterable[RunRecord], configured: Frontier | None) -> Frontier | None:
    """``configured`` (from the fleet) if given, else the cloud rung with the highest mean cost
    per answered attempt among ``runs``; ``None`` if no run ever reached a cloud rung."""
    if configured is not None:
        return configured
    costs: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        for a in run.attempts:
            if a.placement == "cloud" and _ok(a):
                costs[a.rung].append(a.cost_usd)
    if not costs:
        return None
    rung = max(costs, key=lambda r: (sum(costs[r]) / len(costs[r]), r))
    return Frontier(rung, None, "store")


def frontier_costs(runs: Sequence[RunRecord], frontier: Frontier | None) -> dict[str, Any]:
    """What ``runs`` would have cost on the frontier rung alone, and on what basis."""
    out: dict[str, Any] = {
        "rung": frontier.rung if frontier else None,
        "source": frontier.source if frontier else None,
        "cost_usd": None, "actual_usd": None, "measured": 0, "priced": 0, "imputed": 0,
        "missing": len(runs),
    }  # fmt: skip
    if frontier is None or not runs:
        return out
    measured = {r.run_id: a.cost_usd for r in runs for a in r.attempts if a.rung == frontier.rung and _ok(a)}
    mean = sum(measured.values()) / len(measured) if measured else None
    total, actual, counts = 0.0, 0.0, Counter[str]()
    for run in runs:
        actual += run.cost_usd
        if run.run_id in measured:
            total += measured[run.run_id]
            counts["measured"] += 1
        elif frontier.price is not None and run.attempts:
            answer = run.accepted or run.attempts[-1]
            # the prompt as a rung counted it (an attempt that failed before answering counts 0)
            prompt = next((a.prompt_tokens for a in run.attempts if a.prompt_tokens), 0)
            total += frontier.price(prompt, answer.completion_tokens, run.latency_s)
            counts["priced"] += 1
        elif mean is not None:
            total += mean
            counts["imputed"] += 1
        else:
            counts["missing"] += 1
            actual -= run.cost_usd  # compare like with like: only runs with a frontier figure
    out.update(counts)
    out["missing"] = counts["missing"]
    if len(runs) > counts["missing"]:
        out["cost_usd"], out["actual_usd"] = total, actual
    return out


# -- per step -----------------------------------------------------------------------------------


def _key(run: RunRecord) -> str:
    return run.step_key or run.step


def step_summary(
    key: str, runs: Sequence[RunRecord], labels: dict[str, list[LabelRecord]], frontier: Frontier | None
) -> dict[str, Any]:
    """The headline figures of one step over ``runs`` (all of that step)."""
    n = len(runs)
    edge = sum(1 for r in runs if _on_edge(r))
    escalations = Counter(a.escalation_reason for r in runs for a in r.attempts if a.escalation_reason)
    verdicts = [accepted_label(r, labels.get(r.run_id, ())) for r in runs]
    labelled = [v for v in verdicts if v is not None]
    wrong = sum(1 for v in labelled if v.value < 0.5)
    latencies = [r.latency_s for r in runs]
    cost = sum(r.cost_usd for r in runs)
    front = frontier_costs(runs, frontier)
    saving = 1.0 - front["actual_usd"] / front["cost_usd"] if front["cost_usd"] else None
    ci = wilson(wrong, len(labelled))
    return {
        "key": key,
        "step": runs[0].step if runs else key,
        "runs": n,
        "resolved": sum(1 for r in runs if r.resolved),
        "edge_runs": edge,
        "edge_share": edge / n if n else None,
        "escalations": dict(sorted(escalations.items(), key=lambda kv: (-kv[1], kv[0]))),
        "escalated_runs": sum(1 for r in runs if any(a.escalation_reason for a in r.attempts)),
        "labelled": len(labelled),
        "labelled_wrong": wrong,
        "accepted_wrong": wrong / len(labelled) if labelled else None,
        "accepted_wrong_ci95": list(ci) if ci else None,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "cost_usd": cost,
        "frontier": front,
        "saving": saving,
        "last_run_at": max(r.created_at for r in runs).isoformat() if runs else None,
    }


def _group(runs: Iterable[RunRecord]) -> dict[str, list[RunRecord]]:
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        groups[_key(run)].append(run)
    return groups


def steps_overview(window: Window, frontier: Frontier | None) -> dict[str, Any]:
    """Every step of the window, most runs first, plus the window itself."""
    front = pick_frontier(window.runs, frontier)
    groups = _group(window.runs)
    rows = [step_summary(k, rs, window.labels, front) for k, rs in groups.items()]
    rows.sort(key=lambda row: (-row["runs"], row["key"]))
    return {"object": "list", "data": rows, "window": _window(window)}


def _window(window: Window) -> dict[str, Any]:
    return {"runs": len(window.runs), "total": window.total, "limit": window.limit,
            "truncated": window.truncated}  # fmt: skip


def edge_share_over_time(runs: Sequence[RunRecord], max_buckets: int = MAX_BUCKETS) -> dict[str, Any]:
    """Runs and edge runs per time bucket (a round width giving at most ``max_buckets``)."""
    if not runs:
        return {"width_s": None, "buckets": []}
    stamps = [r.created_at.astimezone(UTC).timestamp() for r in runs]
    lo, hi = min(stamps), max(stamps)
    width = next((w for w in _WIDTHS_S if (hi // w - lo // w) + 1 <= max_buckets), _WIDTHS_S[-1])
    first = int(lo // width)
    counts: dict[int, list[int]] = {}
    for run, t in zip(runs, stamps, strict=True):
        slot = counts.setdefault(int(t // width) - first, [0, 0])
        slot[0] += 1
        slot[1] += _on_edge(run)
    buckets = []
    for i in range(int(hi // width) - first + 1):
        n, e = counts.get(i, [0, 0])
        start = datetime.fromtimestamp((first + i) * width, UTC)
        buckets.append({"start": start.isoformat(), "end": (start + timedelta(seconds=width)).isoformat(),
                        "runs": n, "edge_runs": e, "edge_share": e / n if n else None})  # fmt: skip
    return {"width_s": width, "buckets": buckets}


def _rungs(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    by: dict[str, list[AttemptRecord]] = defaultdict(list)
    for run in runs:
        for a in run.attempts:
            by[a.rung].append(a)
    rows = []
    for rung, attempts in by.items():
        lat = [a.latency_s for a in attempts]
        rows.append({
            "rung": rung, "placement": attempts[0].placement, "attempts": len(attempts),
            "accepted": sum(a.accepted for a in attempts),
            "escalated": sum(1 for a in attempts if a.escalation_reason),
            "latency_p50_s": percentile(lat, 50), "latency_p95_s": percentile(lat, 95),
            "cost_usd": sum(a.cost_usd for a in attempts),
        })  # fmt: skip
    rows.sort(key=lambda row: (min(a.index for a in by[str(row["rung"])]), str(row["rung"])))
    return rows


def run_row(run: RunRecord, labels: Sequence[LabelRecord]) -> dict[str, Any]:
    """One line of a step's run list (no prompt text: the run page has it)."""
    label = accepted_label(run, labels)
    return {
        "run_id": run.run_id, "created_at": run.created_at.isoformat(), "outcome": run.outcome,
        "rung": run.rung, "placement": run.placement, "attempts": len(run.attempts),
        "escalations": [a.escalation_reason for a in run.attempts if a.escalation_reason],
        "latency_s": run.latency_s, "cost_usd": run.cost_usd,
        "label": None if label is None else ("wrong" if label.value < 0.5 else "right"),
    }  # fmt: skip


def step_detail(
    window: Window, key: str, frontier: Frontier | None, recent: int = 50
) -> dict[str, Any] | None:
    """One step's page: its summary, edge share over time, per-rung figures, recent runs.
    ``None`` when the caller has no run of that step."""
    runs = _group(window.runs).get(key)
    if not runs:
        return None
    front = pick_frontier(window.runs, frontier)
    body = step_summary(key, runs, window.labels, front)
    body["object"] = "step"
    body["edge_share_over_time"] = edge_share_over_time(runs)
    body["rungs"] = _rungs(runs)
    body["recent_runs"] = [run_row(r, window.labels.get(r.run_id, ())) for r in runs[:recent]]
    body["window"] = _window(window)
    return body


def _attempt(a: AttemptRecord) -> dict[str, Any]:
    return {
        "index": a.index, "rung": a.rung, "placement": a.placement,
        "verdict": None if a.verdict_ok is None else ("pass" if a.verdict_ok else "fail"),
        "verdict_reason": a.verdict_reason, "verdict_detail": a.verdict_detail,
        "escalation_reason": a.escalation_reason, "accepted": a.accepted,
        "latency_s": a.latency_s, "cost_usd": a.cost_usd,
        "prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens,
        "finish_reason": a.finish_reason, "error": a.error, "error_detail": a.error_detail,
        "mean_logprob": a.mean_logprob, "text": a.text,
    }  # fmt: skip


def run_view(run: RunRecord, labels: Sequence[LabelRecord]) -> dict[str, Any]:
    """A run's page: what was asked, what was accepted, and every attempt side by side."""
    label = accepted_label(run, labels)
    return {
        "object": "run", "run_id": run.run_id, "created_at": run.created_at.isoformat(),
        "step": run.step, "key": _key(run), "outcome": run.outcome, "reason": run.reason,
        "rung": run.rung, "placement": run.placement, "latency_s": run.latency_s,
        "cost_usd": run.cost_usd, "messages": run.messages, "text": run.text,
        "label": None if label is None else {
            "value": label.value, "source": label.source, "kind": label.kind, "note": label.note,
            "wrong": label.value < 0.5,
        },
        "labels": [{"source": lb.source, "kind": lb.kind, "value": lb.value, "attempt_idx": lb.attempt_idx,
                    "note": lb.note, "created_at": lb.created_at.isoformat()} for lb in labels],
        "attempts": [_attempt(a) for a in run.attempts],
    }  # fmt: skip
