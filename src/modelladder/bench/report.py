"""``report.html``: one self-contained page (inline SVG drawn here, no CDN, no dependency).

Hand-written SVG instead of matplotlib: the plots are simple (points, lines, boxes, bars),
the page must open offline, and the package should not grow a plotting dependency. Every
drawn mark carries ``data-mark`` and every plot ``data-plot``; a few lines of script set
``data-drawn`` (marks with a non-empty layout box) after load, which the headless-Chromium
test reads to check the plots are really drawn.

Plots: accuracy against cost per 1,000 steps (single rungs, the ladder at each gate
threshold with the non-decreasing convex hull and its AIQ, the chosen threshold); latency
distribution per rung; escalation reasons.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelladder.bench.summary import percentile, summarize

W, H = 720, 420
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _pct(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v * 100:.{digits}f}%"


def _num(v: float | None, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)


def _usd(v: float | None) -> str:
    if v is None:
        return "-"
    return f"${v:.4f}" if v < 1 else f"${v:,.2f}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]`` (steps of 1, 2 or 5 times a power of ten)."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        if t >= lo - step * 1e-9:
            ticks.append(round(t, 12))
        t += step
    return ticks


class Frame:
    """Data-to-pixel mapping and axes for one plot (linear, or log10 on x)."""

    def __init__(
        self,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        *,
        x_log: bool = False,
        width: int = W,
        height: int = H,
        margin: tuple[int, int, int, int] = (70, 20, 20, 50),  # left, right, top, bottom
    ):
        self.x_log = x_log
        lo, hi = x_range
        if x_log:
            lo, hi = math.log10(max(lo, 1e-12)), math.log10(max(hi, 1e-12))
        if hi <= lo:
            hi = lo + 1.0
        self.xlo, self.xhi = lo, hi
        self.ylo, self.yhi = y_range if y_range[1] > y_range[0] else (y_range[0], y_range[0] + 1.0)
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = margin

    def x(self, v: float) -> float:
        t = math.log10(max(v, 1e-12)) if self.x_log else v
        return self.left + (t - self.xlo) / (self.xhi - self.xlo) * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        return (
            self.height
            - self.bottom
            - (v - self.ylo) / (self.yhi - self.ylo) * (self.height - self.top - self.bottom)
        )

    def axes(self, x_label: str, y_label: str, y_fmt: Any = None, x_fmt: Any = None) -> str:
        parts = []
        x0, x1 = self.left, self.width - self.right
        y0, y1 = self.height - self.bottom, self.top
        parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" class="axis"/>')
        parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" class="axis"/>')
        for t in nice_ticks(self.ylo, self.yhi):
            py = self.y(t)
            label = y_fmt(t) if y_fmt else f"{t:g}"
            parts.append(f'<line x1="{x0}" y1="{py:.1f}" x2="{x1}" y2="{py:.1f}" class="grid"/>')
            parts.append(
                f'<text x="{x0 - 6}" y="{py + 4:.1f}" text-anchor="end" class="tick">{_e(label)}</text>'
            )
        if self.x_log:
            xticks = [
                m * 10**e
                for e in range(math.floor(self.xlo), math.ceil(self.xhi) + 1)
                for m in (1, 3)
                if self.xlo - 1e-9 <= math.log10(m * 10**e) <= self.xhi + 1e-9
            ]
        else:
            xticks = nice_ticks(self.xlo, self.xhi)
        for t in xticks:
            px = self.x(t)
            label = x_fmt(t) if x_fmt else f"{t:g}"
            parts.append(f'<line x1="{px:.1f}" y1="{y0}" x2="{px:.1f}" y2="{y0 + 5}" class="axis"/>')
            parts.append(
                f'<text x="{px:.1f}" y="{y0 + 18}" text-anchor="middle" class="tick">{_e(label)}</text>'
            )
        parts.append(
            f'<text x="{(x0 + x1) / 2:.1f}" y="{self.height - 10}" text-anchor="middle" class="label">{_e(x_label)}</text>'
        )
        parts.append(
            f'<text x="16" y="{(y0 + y1) / 2:.1f}" text-anchor="middle" class="label" '
            f'transform="rotate(-90 16 {(y0 + y1) / 2:.1f})">{_e(y_label)}</text>'
        )
        return "\n".join(parts)


def _svg(plot: str, title: str, body: str, width: int = W, height: int = H) -> str:
    return (
        f'<svg class="plot" data-plot="{_e(plot)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{_e(title)}">\n'
        f"<title>{_e(title)}</title>\n{body}\n</svg>"
    )


def _empty(plot: str, title: str, message: str) -> str:
    body = (
        f'<text x="{W / 2}" y="40" text-anchor="middle" class="label" data-mark="empty">{_e(message)}</text>'
    )
    return _svg(plot, title, body, height=70)


# --------------------------------------------------------------------------- plot data


def cost_quality_points(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The points of the cost-quality plot: ``rungs`` (single rungs), ``ladder`` (threshold
    points), ``hull``, ``chosen``, ``configured``, ``aiq`` and which half they are measured on."""
    sw = summary.get("sweep")
    if sw:
        half = "report"
        rungs = [
            {
                "name": name,
                "cost": s[half]["cost_per_1k_steps_usd"],
                "acc": s[half]["accuracy"],
                "reference": s.get("backend") == "reference",
            }
            for name, s in sw["single_rungs"].items()
            if s[half]["accuracy"] is not None
        ]
        ladder = [
            {"label": p["label"], "cost": p[half]["cost_per_1k_steps_usd"], "acc": p[half]["accuracy"]}
            for p in sw["grid"]
            if p[half]["accuracy"] is not None
        ]
        chosen = sw.get("chosen")
        rep = [r for r in records if r.get("split") == half]
        conf = summarize(rep, ladder=True) if rep else None
        aiq = sw.get("aiq") or {}
        return {
            "half": half,
            "rungs": rungs,
            "ladder": ladder,
            "hull": aiq.get("hull_ladder") or [],
            "hull_rungs": aiq.get("hull_single_rungs") or [],
            "chosen": (
                {
                    "label": chosen["label"],
                    "cost": chosen[half]["cost_per_1k_steps_usd"],
                    "acc": chosen[half]["accuracy"],
                }
                if chosen
                else None
            ),
            "configured": (
                {"cost": conf["cost_per_1k_steps_usd"], "acc": conf["accuracy"]}
                if conf and conf["n"]
                else None
            ),
            "aiq": aiq,
        }
    overall = summary.get("overall") or {}
    label = str(summary.get("mode", "run"))
    refs = {r["name"] for r in (summary.get("fleet") or {}).get("rungs", []) if r.get("is_reference")}
    is_ref = label.startswith("rung:") and label[5:] in refs
    pts = []
    if overall.get("accuracy") is not None:
        pts.append(
            {
                "name": f"{label}, all items",
                "cost": overall["cost_per_1k_steps_usd"],
                "acc": overall["accuracy"],
                "reference": is_ref,
            }
        )
    cats = summary.get("categories") or {}
    if len(cats) > 1:
        for cat, s in cats.items():
            if s.get("accuracy") is not None:
                pts.append(
                    {
                        "name": cat,
                        "cost": s["cost_per_1k_steps_usd"],
                        "acc": s["accuracy"],
                        "reference": is_ref,
                    }
                )
    return {
        "half": "all",
        "rungs": pts,
        "ladder": [],
        "hull": [],
        "hull_rungs": [],
        "chosen": None,
        "configured": None,
        "aiq": {},
    }


def latency_samples(records: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Latency of every attempt, by rung (a sweep's per-rung generations included), plus
    the end-to-end latency per item."""
    by: dict[str, list[float]] = {}
    for r in records:
        attempts = list((r.get("rungs") or {}).values()) or list(r.get("attempts") or [])
        for a in attempts:
            by.setdefault(str(a.get("rung")), []).append(float(a.get("latency_s") or 0.0))
    items = [float(r.get("latency_s") or 0.0) for r in records if r.get("attempts")]
    if items:
        by["per item (end to end)"] = items
    return by


# --------------------------------------------------------------------------- plots


def plot_cost_quality(data: Mapping[str, Any]) -> str:
    title = "Accuracy against cost per 1,000 steps"
    pts = [p for p in (*data["rungs"], *data["ladder"]) if p.get("cost") is not None]
    if not pts:
        return _empty("cost-quality", title, "no measured points")
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
        tip = f"ladder {p['label']}: accuracy {_pct(p['acc'])}, {_usd(p['cost'])} per 1k steps"
        parts.append(
            f'<circle cx="{fr.x(p["cost"]):.1f}" cy="{fr.y(p["acc"]):.1f}" r="3" class="pt-ladder" data-mark="ladder">'
            f"<title>{_e(tip)}</title></circle>"
        )
    placed: list[tuple[float, float, float]] = []
    for i, p in enumerate(data["rungs"]):
        color = PALETTE[i % len(PALETTE)]
        name = p["name"] + (" (oracle, not a model)" if p.get("reference") else "")
        cx, cy = fr.x(p["cost"]), fr.y(p["acc"])
        tip = f"{name}: accuracy {_pct(p['acc'])}, {_usd(p['cost'])} per 1k steps"
        parts.append(
            f'<rect x="{cx - 6:.1f}" y="{cy - 6:.1f}" width="12" height="12" fill="{color}" class="pt-rung" data-mark="rung">'
            f"<title>{_e(tip)}</title></rect>"
        )
        anchor = "end" if cx > fr.width * 0.6 else "start"
        lx = cx - 10 if anchor == "end" else cx + 10
        x0, x1 = (lx - 6.2 * len(name), lx) if anchor == "end" else (lx, lx + 6.2 * len(name))
        ly = cy - 8 if cy > fr.top + 40 else cy + 20
        while any(x0 < b1 and b0 < x1 and abs(ly - by) < 13 for b0, b1, by in placed):
            ly += 13  # move down until it does not overlap a label already placed
        placed.append((x0, x1, ly))
        parts.append(
            f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" fill="{color}" class="pt-label">{_e(name)}</text>'
        )
    if data.get("configured"):
        c = data["configured"]
        parts.append(
            f'<path d="M{fr.x(c["cost"]) - 7:.1f},{fr.y(c["acc"]):.1f} l7,-7 l7,7 l-7,7 Z" class="pt-configured" data-mark="configured">'
            f"<title>{_e('ladder, gate of the fleet file: ' + _pct(c['acc']) + ', ' + _usd(c['cost']) + ' per 1k steps')}</title></path>"
        )
    if data.get("chosen"):
        c = data["chosen"]
        parts.append(
            f'<circle cx="{fr.x(c["cost"]):.1f}" cy="{fr.y(c["acc"]):.1f}" r="8" class="pt-chosen" data-mark="chosen">'
            f"<title>{_e('chosen on the calibrate half: ' + c['label'])}</title></circle>"
        )
    return _svg("cost-quality", title, "\n".join(parts))


def plot_latency(samples: Mapping[str, Sequence[float]]) -> str:
    title = "Latency per attempt, by rung (box: p25-p75, line: median, whiskers: p5-p95)"
    rows = [(name, list(v)) for name, v in samples.items() if v]
    if not rows:
        return _empty("latency", title, "no latencies recorded")
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
            f'<text x="{fr.left - 8}" y="{yc + 4:.1f}" text-anchor="end" class="tick">{_e(name)}</text>'
        )
        parts.append(
            f'<line x1="{x5:.1f}" y1="{yc:.1f}" x2="{x95:.1f}" y2="{yc:.1f}" stroke="{color}" class="whisker" data-mark="whisker"/>'
        )
        parts.append(
            f'<rect x="{x25:.1f}" y="{yc - 12:.1f}" width="{max(x75 - x25, 2):.1f}" height="24" fill="{color}" '
            f'class="box" data-mark="box"><title>{_e(tip)}</title></rect>'
        )
        parts.append(
            f'<line x1="{x50:.1f}" y1="{yc - 12:.1f}" x2="{x50:.1f}" y2="{yc + 12:.1f}" class="median" data-mark="median"/>'
        )
    return _svg("latency", title, "\n".join(parts), height=height)


def plot_escalations(reasons: Mapping[str, int], title: str) -> str:
    rows = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    if not rows:
        return _empty("escalations", title, "no escalations: every first attempt was accepted")
    height = max(140, 70 + 30 * len(rows))
    top = max(v for _, v in rows)
    fr = Frame((0.0, top * 1.15), (0.0, float(len(rows))), height=height, margin=(230, 30, 20, 50))
    parts = [fr.axes("attempts rejected", "", y_fmt=lambda t: "")]
    for i, (reason, count) in enumerate(rows):
        yc = fr.y(len(rows) - i - 0.5)
        x0, x1 = fr.x(0), fr.x(count)
        parts.append(
            f'<text x="{fr.left - 8}" y="{yc + 4:.1f}" text-anchor="end" class="tick">{_e(reason)}</text>'
        )
        parts.append(
            f'<rect x="{x0:.1f}" y="{yc - 10:.1f}" width="{max(x1 - x0, 1):.1f}" height="20" class="bar" data-mark="bar">'
            f"<title>{_e(f'{reason}: {count}')}</title></rect>"
        )
        parts.append(f'<text x="{x1 + 4:.1f}" y="{yc + 4:.1f}" class="tick">{count}</text>')
    return _svg("escalations", title, "\n".join(parts), height=height)


# --------------------------------------------------------------------------- tables


def _summary_table(figs: Mapping[str, Any], ladder: bool) -> str:
    head = [
        "category",
        "n",
        "accuracy",
        "p50 latency",
        "p95 latency",
        "edge share",
        "escalation rate",
        "cost",
        "cost / 1k steps",
    ]
    if ladder:
        head.append("accepted wrong")
    rows = []
    cats = dict(figs.get("categories") or {})
    cats["overall"] = figs.get("overall") or {}
    for name, s in cats.items():
        cells = [
            name,
            s.get("n"),
            _pct(s.get("accuracy")),
            _num(s.get("p50_latency_s"), ".2f") + " s",
            _num(s.get("p95_latency_s"), ".2f") + " s",
            _pct(s.get("edge_share")),
            _pct(s.get("escalation_rate")),
            _usd(s.get("cost_usd")),
            _usd(s.get("cost_per_1k_steps_usd")),
        ]
        if ladder:
            cells.append(_pct(s.get("accepted_wrong_rate")))
        cls = ' class="overall"' if name == "overall" else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return (
        "<table><thead><tr>"
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _fleet_table(summary: Mapping[str, Any]) -> str:
    rows = []
    for r in summary.get("fleet", {}).get("rungs", []):
        if r["placement"] == "cloud":
            price = f"${r['price_in_per_m']:g} / ${r['price_out_per_m']:g} per 1M tokens in/out"
        else:
            price = f"${r['price_per_second']:g} per second of compute"
        name = r["name"] + (" (reference oracle, not a model)" if r.get("is_reference") else "")
        lat = f"{r['latency_s']:g} s (from the fleet file)" if r.get("latency_s") is not None else "measured"
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{_e(c)}</td>"
                for c in (name, r["backend"], r["placement"], price, lat, r.get("source") or "")
            )
            + "</tr>"
        )
    head = ("rung", "backend", "placement", "price", "latency", "source")
    return (
        "<table><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _sweep_section(summary: Mapping[str, Any]) -> str:
    sw = summary.get("sweep")
    if not sw:
        return ""
    out = ["<h2>Gate calibration (one pass, replayed)</h2>"]
    top_label = sw["top_rung"] + (" (reference oracle)" if sw.get("top_is_reference") else "")
    sizes = sw["split_sizes"]
    out.append(
        f"<p>Ladder {_e(' → '.join(sw['rungs']))}. {sizes['calibrate']} items calibrate the threshold, "
        f"{sizes['report']} other items report it (split by a hash of the item id). Target: "
        f"{_pct(sw['target'], 0)} of the top rung ({_e(top_label)}).</p>"
    )
    ch = sw.get("chosen")
    if ch:
        g = ch["goal"]
        rep, cal = ch["report"], ch["calibrate"]

        def ok(b: bool) -> str:
            return '<span class="ok">met</span>' if b else '<span class="bad">not met</span>'

        out.append(
            "<table><thead><tr><th></th><th>calibrate half</th><th>report half</th></tr></thead><tbody>"
            f"<tr><td>chosen threshold</td><td colspan=2>{_e(ch['label'])}"
            f"{'' if ch['reached_target_on_calibrate'] else ' (no threshold reached the target; the most accurate one is shown)'}</td></tr>"
            f"<tr><td>accuracy</td><td>{_pct(cal['accuracy'])}</td><td>{_pct(rep['accuracy'])}</td></tr>"
            f"<tr><td>top rung alone</td><td>{_pct(sw['single_rungs'][sw['top_rung']]['calibrate']['accuracy'])}</td>"
            f"<td>{_pct(sw['single_rungs'][sw['top_rung']]['report']['accuracy'])}</td></tr>"
            f"<tr><td>edge share</td><td>{_pct(cal['edge_share'])}</td><td>{_pct(rep['edge_share'])}</td></tr>"
            f"<tr><td>accepted wrong</td><td>{_pct(cal['accepted_wrong_rate'])}</td><td>{_pct(rep['accepted_wrong_rate'])}</td></tr>"
            f"<tr><td>cost / 1k steps</td><td>{_usd(cal['cost_per_1k_steps_usd'])}</td><td>{_usd(rep['cost_per_1k_steps_usd'])}</td></tr>"
            "</tbody></table>"
        )
        for gg in (g, ch.get("goal_ast")):
            if not gg:
                continue
            out.append(
                f"<p>Goal on the report half, {_e(', '.join(gg['categories']))} ({gg['n']} items): accuracy "
                f"{_pct(gg['accuracy'])} ≥ {_pct(sw['target'], 0)} × top rung's {_pct(gg['top_accuracy'])} "
                f"({_pct(gg['accuracy_vs_top'])} of it) {ok(gg['accuracy_ok'])}; edge share "
                f"{_pct(gg['edge_share'])} ≥ 60% {ok(gg['edge_share_ok'])}; accepted wrong "
                f"{_pct(gg['accepted_wrong_rate'])} ≤ 5% {ok(gg['accepted_wrong_ok'])}.</p>"
            )
    auc = sw.get("signal_auc") or {}
    for rung, halves in auc.items():
        a = halves.get("report") or {}
        out.append(
            f"<p>How well the gate's signals separate {_e(rung)}'s right answers from its wrong ones (ROC AUC, "
            f"report half; 0.5 = no signal): mean logprob {_num(a.get('auc_mean_logprob'), '.3f')}, min logprob "
            f"{_num(a.get('auc_min_logprob'), '.3f')} over {a.get('n_right', 0)} right and {a.get('n_wrong', 0)} "
            f"wrong answers; {a.get('no_value_tokens', 0)} answers carry no value token at all (e.g. a decline), "
            f"so no threshold can stop them ({a.get('no_value_tokens_wrong', 0)} of them wrong).</p>"
        )
    aiq = sw.get("aiq") or {}
    if aiq.get("cost_range"):
        lo, hi = aiq["cost_range"]
        out.append(
            f"<p>AIQ (RouterBench: area under the non-decreasing convex hull of accuracy against cost, "
            f"over {_usd(lo)}–{_usd(hi)} per 1k steps, report half): single rungs mixed at random "
            f"{_num(aiq.get('single_rungs'), '.4f')}, ladder thresholds {_num(aiq.get('ladder'), '.4f')}, "
            f"both together {_num(aiq.get('ladder_with_rungs'), '.4f')}.</p>"
        )
    hull = {tuple(p) for p in aiq.get("hull_ladder") or []}
    same: dict[tuple[float, float], list[Mapping[str, Any]]] = {}
    for p in sw["grid"]:
        key = (p["report"]["cost_per_1k_steps_usd"], p["report"]["accuracy"])
        if key in hull:
            same.setdefault(key, []).append(p)
    if same:
        out.append(
            "<p>Ladder thresholds on the hull (report half; thresholds with identical results are grouped):</p>"
            "<table><thead><tr><th>threshold</th><th>accuracy</th><th>edge share</th><th>accepted wrong</th>"
            "<th>cost / 1k steps</th></tr></thead><tbody>"
        )
        for key in sorted(same):
            group = same[key]
            r = group[0]["report"]
            label = group[0]["label"] + (f" (and {len(group) - 1} more)" if len(group) > 1 else "")
            out.append(
                f"<tr><td>{_e(label)}</td><td>{_pct(r['accuracy'])}</td><td>{_pct(r['edge_share'])}</td>"
                f"<td>{_pct(r['accepted_wrong_rate'])}</td><td>{_usd(r['cost_per_1k_steps_usd'])}</td></tr>"
            )
        out.append("</tbody></table>")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:980px;color:#222;padding:0 12px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}tr.overall td{font-weight:600;background:#f6f6f6}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px}
.ok{color:#1a7f37;font-weight:600}.bad{color:#b42318;font-weight:600}
svg.plot{display:block;margin:.5em 0;background:#fff;border:1px solid #eee;max-width:100%;height:auto}
.axis{stroke:#444;stroke-width:1}.grid{stroke:#eee;stroke-width:1}
.tick{font-size:11px;fill:#444}.label{font-size:12px;fill:#222}.pt-label{font-size:11px;font-weight:600}
.pt-ladder{fill:#888;fill-opacity:.55}.pt-rung{stroke:#000;stroke-width:1}
.pt-chosen{fill:none;stroke:#d62728;stroke-width:2.5}.pt-configured{fill:#ff7f0e;stroke:#000}
.hull{fill:none;stroke:#1f77b4;stroke-width:2}.hull-area{fill:#1f77b4;fill-opacity:.10;stroke:none}
.hull-rungs{fill:none;stroke:#555;stroke-width:1.5;stroke-dasharray:5 4}
.whisker{stroke-width:2}.box{fill-opacity:.45;stroke:#333}.median{stroke:#000;stroke-width:2.5}
.bar{fill:#9467bd}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var drawn = 0;
  document.querySelectorAll('svg[data-plot]').forEach(function (svg) {
    var box = svg.getBoundingClientRect();
    var marks = Array.prototype.filter.call(svg.querySelectorAll('[data-mark]'), function (m) {
      var b = m.getBBox(); return b.width > 0 || b.height > 0;
    });
    var n = (box.width > 0 && box.height > 0) ? marks.length : 0;
    svg.setAttribute('data-drawn', String(n));
    if (n > 0) drawn += 1;
  });
  document.body.setAttribute('data-plots-drawn', String(drawn));
});
"""


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
        f"<title>modelladder bench bfcl: {_e(summary.get('run'))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>BFCL v4 with modelladder: <code>{_e(summary.get('mode'))}</code></h1>",
        f"<p>Run <code>{_e(summary.get('run'))}</code>, generated {_e(summary.get('generated'))}; bfcl-eval "
        f"{_e(summary.get('bfcl_eval'))}; machine: {_e(m.get('nproc'))} CPUs, {_e(m.get('cpu'))}. "
        f"Categories: {_e(', '.join(summary.get('categories_requested') or []))}"
        f"{'' if summary.get('limit') is None else ' (first {} items each)'.format(summary.get('limit'))}."
        f"{'' if summary.get('complete', True) else ' <b>Incomplete run</b>: some items have no result yet.'}</p>",
    ]
    if labels.get("reference"):
        parts.append(f'<p class="note">{_e(labels["reference"])}</p>')
    for note in summary.get("notes") or []:
        parts.append(f'<p class="note">{_e(note)}</p>')
    parts += [
        "<h2>Fleet</h2>",
        _fleet_table(summary),
        "<h2>Results" + (" (ladder with the gate of the fleet file)" if ladder else "") + "</h2>",
        _summary_table(summary, ladder),
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
        _sweep_section(summary),
        "<h2>Latency</h2>",
        plot_latency(latency_samples(records)),
        "<h2>Escalations</h2>",
        plot_escalations(dict(reasons), esc_title),
        f"<script>{_SCRIPT}</script>",
        f'<script type="application/json" id="summary-data">{_json_for_script(summary)}</script>',
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _json_for_script(obj: Any) -> str:
    return json.dumps(obj, default=str).replace("</", "<\\/")


def write_report(path: Path, summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> Path:
    path.write_text(render_report(summary, records), encoding="utf-8")
    return path
