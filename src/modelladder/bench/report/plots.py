"""The report's three plots, each an inline ``<svg>``: accuracy against cost per 1,000 steps
(single rungs, the ladder at each gate threshold with the non-decreasing convex hull and
its AIQ, the chosen threshold), the latency distribution per rung, and escalation reasons.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from modelladder.bench.report.svg import PALETTE, Frame, empty, esc, pct, svg, usd
from modelladder.stats import percentile

__all__ = ["plot_cost_quality", "plot_escalations", "plot_latency"]


def plot_cost_quality(data: Mapping[str, Any]) -> str:
    title = "Accuracy against cost per 1,000 steps"
    pts = [p for p in (*data["rungs"], *data["ladder"]) if p.get("cost") is not None]
    if not pts:
        return empty("cost-quality", title, "no measured points")
    xs = [p["cost"] for p in pts]
    x_hi = max(xs) * 1.08 or 1.0
    x_lo = 0.0
    fr = Frame((x_lo, x_hi), (0.0, 1.0))
    parts = [fr.axes("cost per 1,000 steps (USD)", "accuracy (AST)", y_fmt=lambda t: f"{t * 100:.0f}%")]

    hull = [tuple(p) for p in data.get("hull") or []]
    if hull:
        # shaded area under the non-decreasing hull (extended flat to the right edge)
        line = [*hull, (max(hull[-1][0], x_hi / 1.08), hull[-1][1])]
        d = " ".join(f"L{fr.x(c):.1f},{fr.y(q):.1f}" for c, q in line)
        area = f"M{fr.x(line[0][0]):.1f},{fr.y(0):.1f} {d} L{fr.x(line[-1][0]):.1f},{fr.y(0):.1f} Z"
        parts.append(f'<path d="{area}" class="hull-area" data-mark="hull-area"/>')
        parts.append(
            f'<path d="M{d[1:]}" class="hull" data-mark="hull"><title>ladder: non-decreasing convex hull</title></path>'
        )
    hull_r = [tuple(p) for p in data.get("hull_rungs") or []]
    if len(hull_r) >= 2:
        d = " ".join(f"L{fr.x(c):.1f},{fr.y(q):.1f}" for c, q in hull_r)
        parts.append(
            f'<path d="M{d[1:]}" class="hull-rungs" data-mark="hull-rungs"><title>single rungs: convex hull (random mixes)</title></path>'
        )

    for p in data["ladder"]:
        tip = f"ladder {p['label']}: accuracy {pct(p['acc'])}, {usd(p['cost'])} per 1k steps"
        parts.append(
            f'<circle cx="{fr.x(p["cost"]):.1f}" cy="{fr.y(p["acc"]):.1f}" r="3" class="pt-ladder" data-mark="ladder">'
            f"<title>{esc(tip)}</title></circle>"
        )
    placed: list[tuple[float, float, float]] = []
    for i, p in enumerate(data["rungs"]):
        color = PALETTE[i % len(PALETTE)]
        name = p["name"] + (" (oracle, not a model)" if p.get("reference") else "")
        cx, cy = fr.x(p["cost"]), fr.y(p["acc"])
        tip = f"{name}: accuracy {pct(p['acc'])}, {usd(p['cost'])} per 1k steps"
        parts.append(
            f'<rect x="{cx - 6:.1f}" y="{cy - 6:.1f}" width="12" height="12" fill="{color}" class="pt-rung" data-mark="rung">'
            f"<title>{esc(tip)}</title></rect>"
        )
        anchor = "end" if cx > fr.width * 0.6 else "start"
        lx = cx - 10 if anchor == "end" else cx + 10
        x0, x1 = (lx - 6.2 * len(name), lx) if anchor == "end" else (lx, lx + 6.2 * len(name))
        ly = cy - 8 if cy > fr.top + 40 else cy + 20
        while any(x0 < b1 and b0 < x1 and abs(ly - by) < 13 for b0, b1, by in placed):
            ly += 13  # move down until it does not overlap a label already placed
        placed.append((x0, x1, ly))
        parts.append(
            f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" fill="{color}" class="pt-label">{esc(name)}</text>'
        )
    if data.get("configured"):
        c = data["configured"]
        parts.append(
            f'<path d="M{fr.x(c["cost"]) - 7:.1f},{fr.y(c["acc"]):.1f} l7,-7 l7,7 l-7,7 Z" class="pt-configured" data-mark="configured">'
            f"<title>{esc('ladder, gate of the fleet file: ' + pct(c['acc']) + ', ' + usd(c['cost']) + ' per 1k steps')}</title></path>"
        )
    if data.get("chosen"):
        c = data["chosen"]
        parts.append(
            f'<circle cx="{fr.x(c["cost"]):.1f}" cy="{fr.y(c["acc"]):.1f}" r="8" class="pt-chosen" data-mark="chosen">'
            f"<title>{esc('chosen on the calibrate half: ' + c['label'])}</title></circle>"
        )
    return svg("cost-quality", title, "\n".join(parts))


def plot_latency(samples: Mapping[str, Sequence[float]]) -> str:
    title = "Latency per attempt, by rung (box: p25-p75, line: median, whiskers: p5-p95)"
    rows = [(name, list(v)) for name, v in samples.items() if v]
    if not rows:
        return empty("latency", title, "no latencies recorded")
    height = max(160, 70 + 46 * len(rows))
    values = [x for _, v in rows for x in v if x > 0]
    lo = min(values) if values else 0.01
    hi = max(values) if values else 1.0
    lo = 10 ** math.floor(math.log10(max(lo * 0.9, 1e-3)))  # a little room left of the fastest
    hi = 10 ** math.ceil(math.log10(max(hi * 1.1, lo * 10)))
    fr = Frame((lo, hi), (0.0, float(len(rows))), x_log=True, height=height, margin=(170, 20, 20, 50))
    parts = [f'<line x1="{fr.left}" y1="{fr.y(0)}" x2="{fr.width - fr.right}" y2="{fr.y(0)}" class="axis"/>']
    fr_ax = fr.axes("seconds (log scale)", "", y_fmt=lambda t: "")
    parts.append("\n".join(line for line in fr_ax.split("\n") if "grid" not in line))
    for i, (name, vals) in enumerate(rows):
        yc = fr.y(len(rows) - i - 0.5)
        p5, p25, p50, p75, p95 = (percentile(vals, q) or 0.0 for q in (5, 25, 50, 75, 95))
        color = PALETTE[i % len(PALETTE)]
        tip = f"{name}: n={len(vals)}, p5 {p5:.2f}s, p25 {p25:.2f}s, median {p50:.2f}s, p75 {p75:.2f}s, p95 {p95:.2f}s"
        x5, x25, x50, x75, x95 = (fr.x(max(v, lo)) for v in (p5, p25, p50, p75, p95))
        parts.append(
            f'<text x="{fr.left - 8}" y="{yc + 4:.1f}" text-anchor="end" class="tick">{esc(name)}</text>'
        )
        parts.append(
            f'<line x1="{x5:.1f}" y1="{yc:.1f}" x2="{x95:.1f}" y2="{yc:.1f}" stroke="{color}" class="whisker" data-mark="whisker"/>'
        )
        parts.append(
            f'<rect x="{x25:.1f}" y="{yc - 12:.1f}" width="{max(x75 - x25, 2):.1f}" height="24" fill="{color}" '
            f'class="box" data-mark="box"><title>{esc(tip)}</title></rect>'
        )
        parts.append(
            f'<line x1="{x50:.1f}" y1="{yc - 12:.1f}" x2="{x50:.1f}" y2="{yc + 12:.1f}" class="median" data-mark="median"/>'
        )
    return svg("latency", title, "\n".join(parts), height=height)


def plot_escalations(reasons: Mapping[str, int], title: str) -> str:
    rows = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    if not rows:
        return empty("escalations", title, "no escalations: every first attempt was accepted")
    height = max(140, 70 + 30 * len(rows))
    top = max(v for _, v in rows)
    fr = Frame((0.0, top * 1.15), (0.0, float(len(rows))), height=height, margin=(230, 30, 20, 50))
    parts = [fr.axes("attempts rejected", "", y_fmt=lambda t: "")]
    for i, (reason, count) in enumerate(rows):
        yc = fr.y(len(rows) - i - 0.5)
        x0, x1 = fr.x(0), fr.x(count)
        parts.append(
            f'<text x="{fr.left - 8}" y="{yc + 4:.1f}" text-anchor="end" class="tick">{esc(reason)}</text>'
        )
        parts.append(
            f'<rect x="{x0:.1f}" y="{yc - 10:.1f}" width="{max(x1 - x0, 1):.1f}" height="20" class="bar" data-mark="bar">'
            f"<title>{esc(f'{reason}: {count}')}</title></rect>"
        )
        parts.append(f'<text x="{x1 + 4:.1f}" y="{yc + 4:.1f}" class="tick">{count}</text>')
    return svg("escalations", title, "\n".join(parts), height=height)
