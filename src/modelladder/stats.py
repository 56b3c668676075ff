"""Statistics over measured figures, shared by the benchmark and by anything that calibrates
a policy from traces: percentiles, the ROC AUC of a confidence signal, and RouterBench's
AIQ of a set of (cost, quality) operating points.

Pure functions of plain numbers, importing nothing of the package, so any layer can use them.

AIQ (RouterBench, Hu et al. 2024, arXiv 2403.12031): the area under the non-decreasing
convex hull of (cost, quality) points, divided by the cost range. The upper convex hull is
what mixing the measured operating points at random achieves; "non-decreasing" because
paying more never has to buy less (past the best point the curve stays flat). Below the
cheapest point of a set nothing is achievable, so the curve is 0 there when several sets
are compared over one common cost range.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["aiq", "auc", "hull_value", "nondecreasing_hull", "percentile"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) with linear interpolation; ``None`` for no values."""
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    xs = sorted(float(v) for v in values)
    if not xs:
        return None
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def auc(scores_pos: Sequence[float], scores_neg: Sequence[float]) -> float | None:
    """P(a random positive scores higher than a random negative), ties counting half
    (the Mann-Whitney form of the ROC AUC). ``None`` when either side is empty."""
    if not scores_pos or not scores_neg:
        return None
    labelled = sorted([(s, 1) for s in scores_pos] + [(s, 0) for s in scores_neg])
    rank_sum = 0.0
    i = 0
    while i < len(labelled):  # average ranks over ties
        j = i
        while j + 1 < len(labelled) and labelled[j + 1][0] == labelled[i][0]:
            j += 1
        avg_rank = (i + j) / 2 + 1
        rank_sum += avg_rank * sum(lab for _, lab in labelled[i : j + 1])
        i = j + 1
    n_pos, n_neg = len(scores_pos), len(scores_neg)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def nondecreasing_hull(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The vertices of the non-decreasing upper convex hull of ``(cost, quality)`` points,
    cheapest first, ending at the (cheapest) best-quality point."""
    pts = sorted({(float(c), float(q)) for c, q in points}, key=lambda p: (p[0], -p[1]))
    # keep only the best quality at each cost
    best: list[tuple[float, float]] = []
    for p in pts:
        if not best or best[-1][0] != p[0]:
            best.append(p)
    hull: list[tuple[float, float]] = []
    for p in best:
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= 0:
            hull.pop()
        hull.append(p)
    if not hull:
        return []
    top = max(q for _, q in hull)
    cut = next(i for i, (_, q) in enumerate(hull) if q == top)
    return hull[: cut + 1]


def hull_value(hull: Sequence[tuple[float, float]], cost: float) -> float:
    """The hull curve at ``cost``: 0 below its cheapest point, flat after its best point."""
    if not hull or cost < hull[0][0]:
        return 0.0
    for (c0, q0), (c1, q1) in zip(hull, hull[1:], strict=False):
        if c0 <= cost <= c1:
            return q0 if c1 == c0 else q0 + (q1 - q0) * (cost - c0) / (c1 - c0)
    return hull[-1][1]


def aiq(
    points: Iterable[tuple[float, float]], c_min: float | None = None, c_max: float | None = None
) -> float | None:
    """RouterBench's AIQ: the mean of the non-decreasing convex hull over ``[c_min, c_max]``
    (default: the points' own cost range). ``None`` without points."""
    pts = list(points)
    if not pts:
        return None
    hull = nondecreasing_hull(pts)
    lo = min(c for c, _ in pts) if c_min is None else float(c_min)
    hi = max(c for c, _ in pts) if c_max is None else float(c_max)
    if hi <= lo:
        return hull_value(hull, lo)
    # exact integral of a piecewise-linear curve: the breakpoints are the range ends and the vertices
    xs = sorted({lo, hi, *(c for c, _ in hull if lo < c < hi)})
    area = 0.0
    for a, b in zip(xs, xs[1:], strict=False):
        if a < hull[0][0] <= b:  # the step up from 0 at the cheapest point
            area += (b - hull[0][0]) * (hull_value(hull, hull[0][0]) + hull_value(hull, b)) / 2
        else:
            area += (b - a) * (hull_value(hull, a) + hull_value(hull, b)) / 2
    return area / (hi - lo)
