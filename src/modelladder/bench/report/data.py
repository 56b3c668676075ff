"""The data behind the report's figures, computed from ``summary.json`` and ``results.jsonl``
records: the cost-quality points (single rungs, the ladder at each gate threshold, their
hull and AIQ) and the per-rung latency samples. Kept apart from the drawing so the numbers
a figure shows can be tested, and reused, without parsing SVG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelladder.bench.summary import summarize

__all__ = ["cost_quality_points", "latency_samples"]


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
