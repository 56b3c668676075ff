"""The report's HTML tables: the fleet, the results per category, and the gate sweep
(the threshold chosen on the calibrate half, its figures on the report half, AIQ)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelladder.bench.report.svg import esc, num, pct, usd

__all__ = ["fleet_table", "summary_table", "sweep_section"]


def summary_table(figs: Mapping[str, Any], ladder: bool) -> str:
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
            pct(s.get("accuracy")),
            num(s.get("p50_latency_s"), ".2f") + " s",
            num(s.get("p95_latency_s"), ".2f") + " s",
            pct(s.get("edge_share")),
            pct(s.get("escalation_rate")),
            usd(s.get("cost_usd")),
            usd(s.get("cost_per_1k_steps_usd")),
        ]
        if ladder:
            cells.append(pct(s.get("accepted_wrong_rate")))
        cls = ' class="overall"' if name == "overall" else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    return (
        "<table><thead><tr>"
        + "".join(f"<th>{esc(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def fleet_table(summary: Mapping[str, Any]) -> str:
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
                f"<td>{esc(c)}</td>"
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


def sweep_section(summary: Mapping[str, Any]) -> str:
    sw = summary.get("sweep")
    if not sw:
        return ""
    out = ["<h2>Gate calibration (one pass, replayed)</h2>"]
    top_label = sw["top_rung"] + (" (reference oracle)" if sw.get("top_is_reference") else "")
    sizes = sw["split_sizes"]
    out.append(
        f"<p>Ladder {esc(' → '.join(sw['rungs']))}. {sizes['calibrate']} items calibrate the threshold, "
        f"{sizes['report']} other items report it (split by a hash of the item id). Target: "
        f"{pct(sw['target'], 0)} of the top rung ({esc(top_label)}).</p>"
    )
    ch = sw.get("chosen")
    if ch:
        g = ch["goal"]
        rep, cal = ch["report"], ch["calibrate"]

        def ok(b: bool) -> str:
            return '<span class="ok">met</span>' if b else '<span class="bad">not met</span>'

        out.append(
            "<table><thead><tr><th></th><th>calibrate half</th><th>report half</th></tr></thead><tbody>"
            f"<tr><td>chosen threshold</td><td colspan=2>{esc(ch['label'])}"
            f"{'' if ch['reached_target_on_calibrate'] else ' (no threshold reached the target; the most accurate one is shown)'}</td></tr>"
            f"<tr><td>accuracy</td><td>{pct(cal['accuracy'])}</td><td>{pct(rep['accuracy'])}</td></tr>"
            f"<tr><td>top rung alone</td><td>{pct(sw['single_rungs'][sw['top_rung']]['calibrate']['accuracy'])}</td>"
            f"<td>{pct(sw['single_rungs'][sw['top_rung']]['report']['accuracy'])}</td></tr>"
            f"<tr><td>edge share</td><td>{pct(cal['edge_share'])}</td><td>{pct(rep['edge_share'])}</td></tr>"
            f"<tr><td>accepted wrong</td><td>{pct(cal['accepted_wrong_rate'])}</td><td>{pct(rep['accepted_wrong_rate'])}</td></tr>"
            f"<tr><td>cost / 1k steps</td><td>{usd(cal['cost_per_1k_steps_usd'])}</td><td>{usd(rep['cost_per_1k_steps_usd'])}</td></tr>"
            "</tbody></table>"
        )
        for gg in (g, ch.get("goal_ast")):
            if not gg:
                continue
            out.append(
                f"<p>Goal on the report half, {esc(', '.join(gg['categories']))} ({gg['n']} items): accuracy "
                f"{pct(gg['accuracy'])} ≥ {pct(sw['target'], 0)} × top rung's {pct(gg['top_accuracy'])} "
                f"({pct(gg['accuracy_vs_top'])} of it) {ok(gg['accuracy_ok'])}; edge share "
                f"{pct(gg['edge_share'])} ≥ 60% {ok(gg['edge_share_ok'])}; accepted wrong "
                f"{pct(gg['accepted_wrong_rate'])} ≤ 5% {ok(gg['accepted_wrong_ok'])}.</p>"
            )
    auc = sw.get("signal_auc") or {}
    for rung, halves in auc.items():
        a = halves.get("report") or {}
        out.append(
            f"<p>How well the gate's signals separate {esc(rung)}'s right answers from its wrong ones (ROC AUC, "
            f"report half; 0.5 = no signal): mean logprob {num(a.get('auc_mean_logprob'), '.3f')}, min logprob "
            f"{num(a.get('auc_min_logprob'), '.3f')} over {a.get('n_right', 0)} right and {a.get('n_wrong', 0)} "
            f"wrong answers; {a.get('no_value_tokens', 0)} answers carry no value token at all (e.g. a decline), "
            f"so no threshold can stop them ({a.get('no_value_tokens_wrong', 0)} of them wrong).</p>"
        )
    aiq = sw.get("aiq") or {}
    if aiq.get("cost_range"):
        lo, hi = aiq["cost_range"]
        out.append(
            f"<p>AIQ (RouterBench: area under the non-decreasing convex hull of accuracy against cost, "
            f"over {usd(lo)}–{usd(hi)} per 1k steps, report half): single rungs mixed at random "
            f"{num(aiq.get('single_rungs'), '.4f')}, ladder thresholds {num(aiq.get('ladder'), '.4f')}, "
            f"both together {num(aiq.get('ladder_with_rungs'), '.4f')}.</p>"
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
                f"<tr><td>{esc(label)}</td><td>{pct(r['accuracy'])}</td><td>{pct(r['edge_share'])}</td>"
                f"<td>{pct(r['accepted_wrong_rate'])}</td><td>{usd(r['cost_per_1k_steps_usd'])}</td></tr>"
            )
        out.append("</tbody></table>")
    return "\n".join(out)
