"""Summary arithmetic and AIQ (pure functions, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from modelladder.bench.summary import summarize, summarize_by_category
from modelladder.stats import aiq, hull_value, nondecreasing_hull, percentile


def rec(cat, valid, lat, cost, placement, rung, esc=(), wrong=None):
    return {
        "category": cat,
        "ast_valid": valid,
        "latency_s": lat,
        "cost_usd": cost,
        "placement": placement,
        "rung": rung,
        "escalations": list(esc),
        "accepted_wrong": wrong,
    }


@pytest.mark.parametrize("q", [0, 5, 25, 50, 75, 90, 95, 99, 100])
def test_percentile_matches_numpy_linear(q):
    values = [0.3, 1.7, 0.9, 12.0, 2.2, 0.31, 5.0]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_edges():
    assert percentile([], 50) is None
    assert percentile([4.0], 95) == 4.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


RECORDS = [
    # simple: 3 items; 2 correct; edge answered 2 (one of them wrong), one escalated to cloud
    rec("simple_python", True, 1.0, 0.00003, "edge", "smol", wrong=False),
    rec("simple_python", False, 2.0, 0.00006, "edge", "smol", wrong=True),
    rec("simple_python", True, 3.0, 0.002, "cloud", "ref", esc=["low_confidence:mean"], wrong=False),
    # irrelevance: 2 items; one unanswered after two rejections, one edge-correct
    rec(
        "irrelevance",
        False,
        4.0,
        0.003,
        None,
        None,
        esc=["contract:parse_error", "backend:timeout"],
        wrong=False,
    ),
    rec("irrelevance", True, 0.5, 0.00001, "edge", "smol", wrong=False),
]


def test_summarize_arithmetic_ladder():
    s = summarize(RECORDS, ladder=True)
    assert s["n"] == 5
    assert s["correct"] == 3
    assert s["accuracy"] == pytest.approx(3 / 5)
    assert s["p50_latency_s"] == pytest.approx(2.0)
    assert s["p95_latency_s"] == pytest.approx(float(np.percentile([1, 2, 3, 4, 0.5], 95)))
    assert s["edge_share"] == pytest.approx(3 / 5)
    assert s["escalation_rate"] == pytest.approx(2 / 5)
    assert s["escalations_by_reason"] == {
        "backend:timeout": 1,
        "contract:parse_error": 1,
        "low_confidence:mean": 1,
    }
    total = 0.00003 + 0.00006 + 0.002 + 0.003 + 0.00001
    assert s["cost_usd"] == pytest.approx(total)
    assert s["cost_per_1k_steps_usd"] == pytest.approx(total / 5 * 1000)
    assert s["answered_by"] == {"ref": 1, "smol": 3}
    assert s["unanswered"] == 1
    # of the 3 edge-accepted items, 1 fails the checker
    assert s["accepted_wrong_rate"] == pytest.approx(1 / 3)
    assert s["accepted_wrong_of_all"] == pytest.approx(1 / 5)


def test_summarize_single_rung_has_no_accepted_wrong():
    s = summarize(RECORDS, ladder=False)
    assert s["accepted_wrong_rate"] is None and "accepted_wrong" not in s


def test_summarize_empty():
    s = summarize([], ladder=True)
    assert s["n"] == 0
    assert s["accuracy"] is None and s["cost_per_1k_steps_usd"] is None and s["accepted_wrong_rate"] is None


def test_by_category_and_macro():
    out = summarize_by_category(RECORDS, ladder=True, categories=["simple_python", "irrelevance", "multiple"])
    cats = out["categories"]
    assert list(cats) == ["simple_python", "irrelevance", "multiple"]
    assert cats["simple_python"]["accuracy"] == pytest.approx(2 / 3)
    assert cats["irrelevance"]["accuracy"] == pytest.approx(1 / 2)
    assert cats["multiple"]["n"] == 0
    assert out["overall"]["accuracy"] == pytest.approx(3 / 5)  # micro
    assert out["overall"]["accuracy_macro"] == pytest.approx((2 / 3 + 1 / 2) / 2)  # empty category left out
    assert cats["simple_python"]["accepted_wrong_rate"] == pytest.approx(1 / 2)
    assert cats["irrelevance"]["edge_share"] == pytest.approx(1 / 2)


# ----------------------------------------------------------------------------- AIQ


def test_hull_drops_dominated_and_decreasing_points():
    pts = [(0.0, 0.5), (0.5, 0.6), (1.0, 1.0), (2.0, 0.8), (0.2, 0.2)]
    # (0.5, 0.6) lies under the segment (0,0.5)-(1,1) (0.75 there); (2, 0.8) is past the best point
    assert nondecreasing_hull(pts) == [(0.0, 0.5), (1.0, 1.0)]


def test_hull_keeps_concave_vertices():
    pts = [(0.0, 0.2), (1.0, 0.8), (3.0, 0.9)]
    assert nondecreasing_hull(pts) == pts
    assert hull_value(pts, 0.5) == pytest.approx(0.5)
    assert hull_value(pts, 2.0) == pytest.approx(0.85)
    assert hull_value(pts, 10.0) == pytest.approx(0.9)  # flat after the best point
    assert hull_value(pts, -1.0) == 0.0  # nothing is achievable below the cheapest point


def test_aiq_values():
    # straight line from (0, .5) to (1, 1): mean .75
    assert aiq([(0.0, 0.5), (1.0, 1.0)]) == pytest.approx(0.75)
    # flat after the best point over a wider range [0, 2]: (.75 * 1 + 1 * 1) / 2
    assert aiq([(0.0, 0.5), (1.0, 1.0), (2.0, 0.8)]) == pytest.approx(0.875)
    # a set that starts at cost 1 on a common range [0, 2] gets 0 below 1
    assert aiq([(1.0, 0.6), (2.0, 0.6)], 0.0, 2.0) == pytest.approx(0.3)
    # adding a cheap strong point can only raise the AIQ
    assert aiq([(0.0, 0.9), (1.0, 0.6), (2.0, 0.6)], 0.0, 2.0) == pytest.approx(0.9)
    assert aiq([]) is None
    assert aiq([(1.0, 0.7)]) == pytest.approx(0.7)  # degenerate range: the value there


def test_aiq_brute_force_agrees():
    rng = np.random.default_rng(7)
    pts = [(float(c), float(q)) for c, q in zip(rng.uniform(0, 5, 12), rng.uniform(0, 1, 12), strict=True)]
    lo, hi = 0.0, 6.0
    hull = nondecreasing_hull(pts)
    grid = np.linspace(lo, hi, 200001)
    numeric = float(np.mean([hull_value(hull, x) for x in grid]))
    assert aiq(pts, lo, hi) == pytest.approx(numeric, abs=2e-4)


def test_auc_mann_whitney():
    from modelladder.stats import auc

    assert auc([3, 4], [1, 2]) == 1.0
    assert auc([1, 2], [3, 4]) == 0.0
    assert auc([1, 1], [1, 1]) == 0.5
    assert auc([2, 3, 1], [0.5, 2.5]) == pytest.approx(4 / 6)
    assert auc([], [1]) is None
    rng = np.random.default_rng(3)
    pos, neg = list(rng.normal(1, 1, 40).round(1)), list(rng.normal(0, 1, 30).round(1))
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert auc(pos, neg) == pytest.approx(brute)
