"""``report.html`` of ``bench agent``, built from the single-turn report's pieces (frame, axes,
the cost-quality and latency plots, the page style and the drawn-marks script), with the
agent's axes: task success (loops) or step accuracy (steps) against cost per 1,000 workflows
or steps, for this run and every ``--compare`` run (each rung alone, the ladder); workflow
latency; the online learning curve.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelladder.bench.report.page import asset, json_for_script
from modelladder.bench.report.plots import plot_cost_quality, plot_latency
from modelladder.bench.report.svg import PALETTE, Frame
from modelladder.bench.report.svg import empty as _empty
from modelladder.bench.report.svg import esc as _e
from modelladder.bench.report.svg import pct as _pct
from modelladder.bench.report.svg import svg as _svg

__all__ = [
    "compare_summaries",
    "latency_samples",
    "plot_agent_cost",
    "plot_curve",
    "render_agent_report",
    "write_agent_report",
]


def _point(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    o = summary.get("overall") or {}
    loops = summary.get("suite") == "loops"
    acc = o.get("task_success" if loops else "accuracy")
    cost = o.get("cost_per_1k_workflows_usd" if loops else "cost_per_1k_steps_usd")
    if acc is None or cost is None:
        return None
    mode = str(summary.get("mode"))
    name = mode[5:] if mode.startswith("rung:") else mode
    ref = any(r.get("is_reference") and r.get("name") == name for r in summary["fleet"]["rungs"])
    return {"name": name, "acc": acc, "cost": cost, "reference": ref}


def compare_summaries(dirs: Sequence[Path], suite: str) -> list[dict[str, Any]]:
    """The summaries of other runs of the same suite (``--compare``), for the cost plot."""
    out = []
    for d in dirs:
        try:
            s = json.loads((Path(d) / "summary.json").read_text())
        except (OSError, ValueError):
            continue
        if s.get("suite") == suite:
            out.append(s)
    return out


def plot_agent_cost(summary: Mapping[str, Any], others: Sequence[Mapping[str, Any]]) -> str:
    loops = summary.get("suite") == "loops"
    pts = [p for p in map(_point, [summary, *others]) if p is not None]
    svg = plot_cost_quality({"rungs": pts, "ladder": []})
    unit, what = (
        ("workflows", "task success (official checker)") if loops else ("steps", "step accuracy (execution)")
    )
    return (svg.replace("Accuracy against cost per 1,000 steps", f"{what} against cost per 1,000 {unit}")
            .replace("cost per 1,000 steps (USD)", f"cost per 1,000 {unit} (USD)")
            .replace("accuracy (AST)", what))  # fmt: skip


def latency_samples(
    summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> dict[str, list[float]]:
    if summary.get("suite") == "loops":
        return {
            "per workflow": [float(r.get("latency_s") or 0.0) for r in records],
            "per hop": [
                float(h.get("latency_s") or 0.0) for r in records for h in r.get("hop_records") or []
            ],
        }
    by: dict[str, list[float]] = {}
    for r in records:
        for a in r.get("attempts") or []:
            by.setdefault(str(a.get("rung")), []).append(float(a.get("latency_s") or 0.0))
    return by


def plot_curve(online: Mapping[str, Any] | None) -> str:
    title = "Online learning curve (cumulative, arrival order)"
    pts = (online or {}).get("curve") or []
    if not pts:
        return _empty("learning-curve", title, "not an --online run")
    fr = Frame((0.0, float(pts[-1]["seen"])), (0.0, 1.0))
    parts = [fr.axes("records seen", "share", y_fmt=lambda t: f"{t * 100:.0f}%")]
    for i, key in enumerate(("accuracy", "edge_share", "accepted_wrong_rate")):
        xy = [(p["seen"], p[key]) for p in pts if p.get(key) is not None]
        if not xy:
            continue
        d = " ".join(f"L{fr.x(x):.1f},{fr.y(y):.1f}" for x, y in xy)
        parts.append(f'<path d="M{d[1:]}" fill="none" stroke="{PALETTE[i]}" stroke-width="2" data-mark="{key}">'
                     f"<title>{_e(key)}</title></path>")  # fmt: skip
        parts.append(f'<text x="{fr.x(xy[-1][0]) - 4:.1f}" y="{fr.y(xy[-1][1]) - 6:.1f}" text-anchor="end" '
                     f'fill="{PALETTE[i]}" class="pt-label">{_e(key)}</text>')  # fmt: skip
    return _svg("learning-curve", title, "\n".join(parts))


def _table(summary: Mapping[str, Any]) -> str:
    loops = summary.get("suite") == "loops"
    cols = (
        (
            ("n", "n", str),
            ("task_success", "task success", _pct),
            ("hops_mean", "hops", lambda v: f"{v:.1f}"),
            ("p50_latency_s", "p50 s", lambda v: f"{v:.2f}"),
            ("edge_hop_share", "edge hops", _pct),
            ("cost_per_1k_workflows_usd", "$/1k workflows", lambda v: f"{v:.4f}"),
        )
        if loops
        else (
            ("n", "n", str),
            ("accuracy", "exec acc", _pct),
            ("exact_accuracy", "exact", _pct),
            ("name_accuracy", "name", _pct),
            ("end_of_turn_accuracy", "end of turn", _pct),
            ("edge_share", "edge", _pct),
            ("accepted_wrong_rate", "accepted wrong", _pct),
            ("prefix_reuse", "prefix reuse", _pct),
            ("cost_per_1k_steps_usd", "$/1k steps", lambda v: f"{v:.4f}"),
        )
    )
    rows = [*(summary.get("categories") or {}).items(), ("overall", summary.get("overall") or {})]
    out = [
        "<table><thead><tr><th>category</th>"
        + "".join(f"<th>{_e(h)}</th>" for _, h, _ in cols)
        + "</tr></thead><tbody>"
    ]
    for name, f in rows:
        cells = "".join(f"<td>{_e('-' if f.get(k) is None else fmt(f[k]))}</td>" for k, _, fmt in cols)
        out.append(f'<tr class="{"overall" if name == "overall" else ""}"><td>{_e(name)}</td>{cells}</tr>')
    return "\n".join([*out, "</tbody></table>"])


def _limit(summary: Mapping[str, Any]) -> str:
    return "" if summary.get("limit") is None else f" (first {summary['limit']} items each)"


def render_agent_report(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                        others: Sequence[Mapping[str, Any]] = ()) -> str:  # fmt: skip
    labels = summary.get("labels") or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>modelladder bench agent: {_e(summary.get('run'))}</title><style>{asset('report.css')}</style></head><body>",
        f"<h1>BFCL v4 multi-turn ({_e(summary.get('suite'))}): <code>{_e(summary.get('mode'))}</code></h1>",
        f"<p>Run <code>{_e(summary.get('run'))}</code>, {_e(summary.get('generated'))}; categories "
        f"{_e(', '.join(summary.get('categories_requested') or []))}"
        f"{_limit(summary)}"
        f"{'' if summary.get('complete', True) else '; <b>incomplete run</b>'}.</p>",
    ]
    if labels.get("reference"):
        parts.append(f'<p class="note">{_e(labels["reference"])}</p>')
    parts += ["<h2>Results</h2>", _table(summary), "<h2>Cost against success</h2>",
              "<p>This run and every <code>--compare</code> run of the same suite (squares; the reference oracle "
              "is marked as such).</p>", plot_agent_cost(summary, others), "<h2>Latency</h2>",
              plot_latency(latency_samples(summary, records)).replace(
                  "Latency per attempt, by rung", "Latency (workflows and hops, or attempts by rung)"),
              "<h2>Online</h2>", plot_curve(summary.get("online")), f"<script>{asset('report.js')}</script>",
              f'<script type="application/json" id="summary-data">{json_for_script(summary)}</script>',
              "</body></html>"]  # fmt: skip
    return "\n".join(parts)


def write_agent_report(path: Path, summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                       compare: Sequence[Path] = ()) -> Path:  # fmt: skip
    others = compare_summaries(compare, str(summary.get("suite")))
    path.write_text(render_agent_report(summary, records, others), encoding="utf-8")
    return path
