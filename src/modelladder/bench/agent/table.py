"""The terminal view of a ``bench agent`` summary (rich), printed at the end of a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from modelladder.bench.table import _pct, _s, _usd

__all__ = ["LOOP_COLS", "STEP_COLS", "agent_table", "print_agent_summary"]

STEP_COLS = (("accuracy", "exec", _pct), ("exact_accuracy", "exact", _pct), ("name_accuracy", "name", _pct),
             ("end_of_turn_accuracy", "stop", _pct), ("p50_latency_s", "p50", _s), ("edge_share", "edge", _pct),
             ("accepted_wrong_rate", "wrong", _pct), ("prefix_reuse", "reuse", _pct),
             ("cost_per_1k_steps_usd", "$/1k steps", _usd))  # fmt: skip
LOOP_COLS = (("task_success", "success", _pct), ("hops_mean", "hops", lambda v: "-" if v is None else f"{v:.1f}"),
             ("p50_latency_s", "p50", _s), ("p95_latency_s", "p95", _s), ("edge_hop_share", "edge hops", _pct),
             ("cost_per_1k_workflows_usd", "$/1k wf", _usd))  # fmt: skip


def agent_table(summary: Mapping[str, Any]) -> Table:
    cols = LOOP_COLS if summary.get("suite") == "loops" else STEP_COLS
    t = Table(box=box.SIMPLE_HEAD, title=f"BFCL v4 multi-turn, {summary.get('suite')} -- {summary.get('mode')}",
              title_justify="left", padding=(0, 1), pad_edge=False)  # fmt: skip
    t.add_column("category", no_wrap=True, min_width=23)
    t.add_column("n", justify="right", min_width=4)
    for _, head, _ in cols:  # wide enough for "100.0%" and "$0.0000": never cut to an ellipsis
        t.add_column(head, justify="right", no_wrap=True, min_width=max(len(head), 7))
    rows = [*(summary.get("categories") or {}).items(), ("overall", summary.get("overall") or {})]
    for name, f in rows:
        t.add_row(name, str(f.get("n", 0)), *(fmt(f.get(k)) for k, _, fmt in cols))
    return t


def print_agent_summary(summary: Mapping[str, Any], console: Console | None = None) -> None:
    con = console or Console(highlight=False)
    con.print(agent_table(summary))
    curve = (summary.get("online") or {}).get("curve") or []
    if curve:
        last = curve[-1]
        con.print(f"online: {len(curve)} curve points, last after {last['seen']}: accuracy {_pct(last['accuracy'])}, "
                  f"edge {_pct(last['edge_share'])} (no learner is plugged in yet)", markup=False)  # fmt: skip
    if summary.get("labels", {}).get("reference"):
        con.print(summary["labels"]["reference"], markup=False, style="dim")
