"""``report.html``: one self-contained page (inline SVG, no CDN, no dependency), assembled
from the tables (:mod:`.tables`) and plots (:mod:`.plots`) with the page's stylesheet and
script, package files beside this module (``report.css``, ``report.js``; the script sets
``data-drawn`` on each plot after load, which the headless-Chromium test reads).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from modelladder.bench.report.data import cost_quality_points, latency_samples
from modelladder.bench.report.plots import plot_cost_quality, plot_escalations, plot_latency
from modelladder.bench.report.svg import esc
from modelladder.bench.report.tables import fleet_table, summary_table, sweep_section

__all__ = ["render_report", "write_report"]


@cache
def asset(name: str) -> str:
    """A package file of the page (its stylesheet or script), read once."""
    return files("modelladder.bench.report").joinpath(name).read_text(encoding="utf-8")


def render_report(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> str:
    """The whole page as a string."""
    ladder = str(summary.get("mode", "")).startswith("ladder")
    cq = cost_quality_points(summary, records)
    reasons: Counter[str] = Counter()
    for r in records:
        reasons.update(r.get("escalations") or ())
    esc_title = (
        "Escalation reasons (attempts the ladder moved past)"
        if ladder
        else "Rejected attempts by reason (contract failures)"
    )
    labels = summary.get("labels") or {}
    m = summary.get("machine") or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>modelladder bench bfcl: {esc(summary.get('run'))}</title>",
        f"<style>\n{asset('report.css')}</style></head><body>",
        f"<h1>BFCL v4 with modelladder: <code>{esc(summary.get('mode'))}</code></h1>",
        f"<p>Run <code>{esc(summary.get('run'))}</code>, generated {esc(summary.get('generated'))}; bfcl-eval "
        f"{esc(summary.get('bfcl_eval'))}; machine: {esc(m.get('nproc'))} CPUs, {esc(m.get('cpu'))}. "
        f"Categories: {esc(', '.join(summary.get('categories_requested') or []))}"
        f"{'' if summary.get('limit') is None else ' (first {} items each)'.format(summary.get('limit'))}."
        f"{'' if summary.get('complete', True) else ' <b>Incomplete run</b>: some items have no result yet.'}</p>",
    ]
    if labels.get("reference"):
        parts.append(f'<p class="note">{esc(labels["reference"])}</p>')
    for note in summary.get("notes") or []:
        parts.append(f'<p class="note">{esc(note)}</p>')
    parts += [
        "<h2>Fleet</h2>",
        fleet_table(summary),
        "<h2>Results" + (" (ladder with the gate of the fleet file)" if ladder else "") + "</h2>",
        summary_table(summary, ladder),
        "<h2>Accuracy against cost</h2>",
        (
            "<p>Measured on the report half of the items. Squares: single rungs (the reference oracle is "
            "marked as such); grey dots: the ladder at each gate threshold; blue line and area: their "
            "non-decreasing convex hull (AIQ); dashed: the hull of the single rungs alone; red ring: the "
            "threshold chosen on the calibrate half; orange diamond: the gate of the fleet file.</p>"
            if cq["half"] == "report"
            else "<p>This run, overall and per category. Run with <code>--mode ladder --sweep-gate</code> for "
            "every rung alone and the ladder at a range of gate thresholds on one plot.</p>"
        ),
        plot_cost_quality(cq),
        sweep_section(summary),
        "<h2>Latency</h2>",
        plot_latency(latency_samples(records)),
        "<h2>Escalations</h2>",
        plot_escalations(dict(reasons), esc_title),
        f"<script>\n{asset('report.js')}</script>",
        f'<script type="application/json" id="summary-data">{json_for_script(summary)}</script>',
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def json_for_script(obj: Any) -> str:
    return json.dumps(obj, default=str).replace("</", "<\\/")


def write_report(path: Path, summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> Path:
    path.write_text(render_report(summary, records), encoding="utf-8")
    return path
