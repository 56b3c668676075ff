"""The compact terminal view of a benchmark summary (rich), printed at the end of a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["print_summary", "summary_table", "sweep_lines"]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _usd(v: float | None) -> str:
    return "-" if v is None else f"${v:.4f}"


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}s"


def summary_table(summary: Mapping[str, Any]) -> Table:
    """Per category and overall: n, accuracy, latency, edge share, escalations, cost."""
    ladder = str(summary.get("mode", "")).startswith("ladder")
    t = Table(
        box=box.SIMPLE_HEAD,
        title=f"BFCL v4 -- {summary.get('mode')}",
        title_justify="left",
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
    )
    t.add_column(
        "category", no_wrap=True, min_width=len(max(summary.get("categories") or ["overall"], key=len))
    )
    for col in ("n", "acc", "p50", "p95", "edge", "esc", "$/1k"):
        t.add_column(col, justify="right", no_wrap=True)
    if ladder:
        t.add_column("wrong", justify="right", no_wrap=True)
    rows = dict(summary.get("categories") or {})
    rows["overall"] = summary.get("overall") or {}
    for name, s in rows.items():
        cells: list[Text | str] = [
            Text(name, style="bold" if name == "overall" else ""),
            str(s.get("n", 0)),
            _pct(s.get("accuracy")),
            _s(s.get("p50_latency_s")),
            _s(s.get("p95_latency_s")),
            _pct(s.get("edge_share")),
            _pct(s.get("escalation_rate")),
            _usd(s.get("cost_per_1k_steps_usd")),
        ]
        if ladder:
            cells.append(_pct(s.get("accepted_wrong_rate")))
        t.add_row(*cells)
    return t


def sweep_lines(summary: Mapping[str, Any]) -> list[str]:
    """A few lines on the gate calibration, when the run had ``--sweep-gate``."""
    sw = summary.get("sweep")
    if not sw:
        return []
    out = []
    top = sw["top_rung"] + (" (reference oracle)" if sw.get("top_is_reference") else "")
    ch = sw.get("chosen")
    if ch:
        rep, g = ch["report"], ch["goal"]
        reached = (
            ""
            if ch["reached_target_on_calibrate"]
            else " [target not reached on calibrate; most accurate shown]"
        )
        out.append(f"gate chosen on the calibrate half: {ch['label']}{reached}")
        out.append(
            f"report half: accuracy {_pct(rep['accuracy'])} = {_pct(g['accuracy_vs_top'])} of {top}, "
            f"edge share {_pct(rep['edge_share'])}, accepted wrong {_pct(rep['accepted_wrong_rate'])}, "
            f"{_usd(rep['cost_per_1k_steps_usd'])} per 1k steps"
        )
        for gg in (g, ch.get("goal_ast")):
            if not gg:
                continue
            verdict = [
                f"accuracy {_pct(gg['accuracy_vs_top'])} of top (>={sw['target']:.0%}): "
                + ("yes" if gg["accuracy_ok"] else "NO"),
                f"edge {_pct(gg['edge_share'])} (>=60%): " + ("yes" if gg["edge_share_ok"] else "NO"),
                f"accepted wrong {_pct(gg['accepted_wrong_rate'])} (<=5%): "
                + ("yes" if gg["accepted_wrong_ok"] else "NO"),
            ]
            out.append(f"goal on {', '.join(gg['categories'])}: " + ", ".join(verdict))
    aiq = sw.get("aiq") or {}
    if aiq.get("ladder") is not None:
        out.append(f"AIQ (report half): single rungs {aiq['single_rungs']:.4f}, ladder {aiq['ladder']:.4f}")
    for name, s in sw["single_rungs"].items():
        label = name + (" (reference oracle, not a model)" if s.get("backend") == "reference" else "")
        out.append(
            f"  alone, report half: {label}: {_pct(s['report']['accuracy'])}, "
            f"{_usd(s['report']['cost_per_1k_steps_usd'])} per 1k steps"
        )
    return out


def print_summary(summary: Mapping[str, Any], console: Console | None = None) -> None:
    con = console or Console(highlight=False)
    con.print(summary_table(summary))
    for line in sweep_lines(summary):
        con.print(line, markup=False)
    if summary.get("labels", {}).get("reference"):
        con.print(summary["labels"]["reference"], markup=False, style="dim")
