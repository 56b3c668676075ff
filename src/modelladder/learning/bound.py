"""The bound: choose an acceptance threshold whose accepted-wrong rate is certified.

For a threshold ``t`` the hypothesis "the accepted-wrong rate among answers scoring >= t is
above alpha" is rejected when the one-sided exact binomial p-value ``P(Bin(n, alpha) <= k)``
is <= the test level, ``n`` the held-out answers accepted at ``t`` and ``k`` the wrong ones
among them. That is the same as the Clopper-Pearson upper confidence bound of the rate being
<= alpha (Clopper & Pearson 1934); conditional on ``n`` the accepted answers are an i.i.d.
sample of "answers scoring >= t", so the test is exact for the conditional rate.

Many thresholds are tried, so the guarantee must survive the choice:

* ``fixed_sequence`` (default; Trust-or-Escalate, ICLR 2025; Learn-then-Test): thresholds are
  tested from the strictest to the laxest in an order fixed before the held-out labels are
  seen, each at level delta, stopping at the first that fails; the laxest rejected one is
  chosen. The family-wise error is <= delta without paying for the number of thresholds.
* ``bonferroni``: every threshold at level delta/m; the laxest certified one is chosen. Less
  powerful, but not stopped by one unlucky strict threshold.

Scipy's ``binom`` / ``beta`` give the exact tails (maintained, vectorised; hand-rolled
incomplete-beta code is where such bounds go wrong).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "Certification",
    "METHODS",
    "certify",
    "check_levels",
    "clopper_pearson_upper",
    "p_value_above",
    "p_value_below",
]

METHODS = ("fixed_sequence", "bonferroni")


def clopper_pearson_upper(k: int, n: int, delta: float) -> float:
    """The one-sided (1 - delta) Clopper-Pearson upper bound of a rate with ``k`` of ``n``."""
    from scipy.stats import beta

    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    return float(beta.ppf(1.0 - delta, k + 1, n - k))


def p_value_below(k: int, n: int, alpha: float) -> float:
    """p-value of "the rate is > alpha" given ``k`` of ``n`` (small: the rate is <= alpha)."""
    from scipy.stats import binom

    return 1.0 if n <= 0 else float(binom.cdf(k, n, alpha))


def p_value_above(k: int, n: int, alpha: float) -> float:
    """p-value of "the rate is <= alpha" given ``k`` of ``n`` (small: the rate exceeds alpha)."""
    from scipy.stats import binom

    return 1.0 if n <= 0 or k <= 0 else float(binom.sf(k - 1, n, alpha))


@dataclass(frozen=True)
class Certification:
    """What the held-out labels certify. ``threshold`` is ``None`` when not certified (escalate
    everything); ``labels_needed`` then estimates how many more labels of this step would
    certify alpha if the observed rates held (``None``: no threshold is even observed under alpha)."""

    certified: bool
    threshold: float | None
    alpha: float
    delta: float
    method: str
    n_held_out: int
    n_accepted: int
    n_wrong: int
    upper_bound: float | None
    accept_share: float
    labels_needed: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_levels(alpha: float, delta: float) -> None:
    """One clear error for levels a bound cannot mean."""
    for name, v in (("max_accepted_wrong (alpha)", alpha), ("1 - confidence (delta)", delta)):
        if not isinstance(v, int | float) or math.isnan(v) or not 0.0 < v < 1.0:
            raise ValueError(f"{name} must be within (0, 1), not {v!r}")


def _counts(scores: Sequence[float], wrong: Sequence[bool], t: float) -> tuple[int, int]:
    n = k = 0
    for s, w in zip(scores, wrong, strict=True):
        if s >= t:
            n += 1
            k += bool(w)
    return n, k


def _min_n(rate: float, alpha: float, level: float) -> int | None:
    """The smallest n such that round(rate * n) wrong of n certifies alpha at ``level``."""
    if rate >= alpha:
        return None
    lo, hi = 1, 1
    while p_value_below(math.ceil(rate * hi), hi, alpha) > level:
        hi *= 2
        if hi > 10**8:
            return None
    while lo < hi:
        mid = (lo + hi) // 2
        if p_value_below(math.ceil(rate * mid), mid, alpha) <= level:
            hi = mid
        else:
            lo = mid + 1
    return lo


def certify(
    scores: Sequence[float],
    wrong: Sequence[bool],
    thresholds: Sequence[float],
    *,
    alpha: float,
    delta: float,
    method: str = "fixed_sequence",
    labelled_share: float = 1.0,
) -> Certification:
    """Choose the laxest threshold of ``thresholds`` (strictest first, fixed before seeing these
    labels) whose accepted-wrong rate on the held-out ``scores``/``wrong`` is certified <= alpha
    with confidence 1 - delta. ``labelled_share``: the share of a step's labels that are held
    out (the rest fitted the score), to turn "held-out labels needed" into "labels needed"."""
    check_levels(alpha, delta)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if len(scores) != len(wrong):
        raise ValueError("scores and labels differ in length")
    ts = list(thresholds)
    if any(b > a for a, b in zip(ts, ts[1:], strict=False)):
        raise ValueError("thresholds must go from the strictest (highest) to the laxest")
    level = delta if method == "fixed_sequence" else delta / max(len(ts), 1)
    total = len(scores)
    chosen: tuple[float, int, int] | None = None
    for t in ts:
        n, k = _counts(scores, wrong, t)
        if n > 0 and p_value_below(k, n, alpha) <= level:
            chosen = (t, n, k)
        elif method == "fixed_sequence":
            break
    if chosen is not None:
        t, n, k = chosen
        return Certification(True, t, alpha, delta, method, total, n, k, clopper_pearson_upper(k, n, level),
                             n / total if total else 0.0, None)  # fmt: skip
    # Not certified: how many held-out labels would certify, at the observed rates?
    needed: int | None = None
    for t in ts:
        n, k = _counts(scores, wrong, t)
        if n == 0:
            continue
        m = _min_n(k / n, alpha, level)
        if m is not None:
            held_out = math.ceil(m * total / n)  # held-out labels for m of them to be accepted
            need = max(1, math.ceil(held_out / labelled_share) - math.ceil(total / labelled_share))
            needed = need if needed is None else min(needed, need)
        if method == "fixed_sequence":
            break  # only the first threshold of the sequence can unlock the rest
    return Certification(False, None, alpha, delta, method, total, 0, 0, None, 0.0, needed)
