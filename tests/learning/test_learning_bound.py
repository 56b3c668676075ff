"""The bound (modelladder.learning.bound): on a simulated stream with a known error rate, the
certified threshold keeps the true accepted-wrong rate under alpha at the promised frequency;
"not certified" says how many labels it needs, and that many do certify."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelladder.learning import bound

ALPHA, DELTA = 0.05, 0.05
GRID = [float(t) for t in np.linspace(0.95, 0.0, 20)]  # strictest first, fixed in advance


def true_rate(t: float) -> float:
    """Scores ~ U(0, 1), P(wrong | s) = (1 - s)^2 / 2: the accepted-wrong rate at threshold t
    is (1 - t)^2 / 6 (base rate 1/6 > alpha; <= alpha exactly for t >= 1 - sqrt(0.3))."""
    return (1.0 - t) ** 2 / 6.0


def simulate(rng: np.random.Generator, n: int) -> tuple[list[float], list[bool]]:
    s = rng.uniform(0, 1, n)
    wrong = rng.uniform(0, 1, n) < (1 - s) ** 2 / 2
    return s.tolist(), wrong.tolist()


@pytest.mark.parametrize("method", bound.METHODS)
def test_certified_threshold_holds_at_the_promised_frequency(method: str) -> None:
    rng = np.random.default_rng(15)
    sims, violations, certified = 300, 0, 0
    naive_violations = 0
    for _ in range(sims):
        scores, wrong = simulate(rng, 1500)
        cert = bound.certify(scores, wrong, GRID, alpha=ALPHA, delta=DELTA, method=method)
        if cert.certified:
            certified += 1
            violations += true_rate(cert.threshold) > ALPHA
            assert cert.upper_bound is not None and cert.upper_bound <= ALPHA
        # the naive rule (laxest threshold whose *observed* rate is <= alpha) for contrast
        ok = [t for t in GRID if (n := sum(s >= t for s in scores))
              and sum(w for s, w in zip(scores, wrong, strict=True) if s >= t) / n <= ALPHA]  # fmt: skip
        naive_violations += bool(ok) and true_rate(min(ok)) > ALPHA
    # at most delta of the runs may certify a threshold whose true rate exceeds alpha
    # (plus 3 standard errors of the simulation itself)
    assert violations / sims <= DELTA + 3 * math.sqrt(DELTA * (1 - DELTA) / sims)
    assert certified / sims >= 0.5  # not vacuous: it does certify most of the time
    assert naive_violations / sims > 2 * DELTA  # and the test is one that can fail


def test_realised_rate_on_fresh_items_matches_the_bound() -> None:
    rng = np.random.default_rng(7)
    scores, wrong = simulate(rng, 2000)
    cert = bound.certify(scores, wrong, GRID, alpha=ALPHA, delta=DELTA)
    assert cert.certified and cert.threshold is not None
    fresh_s, fresh_w = simulate(rng, 50_000)
    acc = [w for s, w in zip(fresh_s, fresh_w, strict=True) if s >= cert.threshold]
    assert sum(acc) / len(acc) <= ALPHA
    assert cert.accept_share > 0.3  # a good signal keeps a real share of the answers


def test_clopper_pearson_known_values() -> None:
    assert bound.clopper_pearson_upper(0, 59, 0.05) == pytest.approx(1 - 0.05 ** (1 / 59))
    assert bound.clopper_pearson_upper(0, 59, 0.05) < 0.05 < bound.clopper_pearson_upper(0, 58, 0.05)
    assert bound.clopper_pearson_upper(3, 3, 0.05) == 1.0 and bound.clopper_pearson_upper(0, 0, 0.05) == 1.0
    # CP bound <= alpha exactly when the binomial p-value is <= delta
    for k, n in ((2, 120), (5, 200), (1, 90)):
        assert (bound.clopper_pearson_upper(k, n, 0.05) <= 0.05) == (bound.p_value_below(k, n, 0.05) <= 0.05)


def test_not_certified_says_how_many_labels_it_needs() -> None:
    scores, wrong = [0.9] * 30, [False] * 30  # 30 right answers: not enough for alpha = 5 %
    cert = bound.certify(scores, wrong, [0.5, 0.0], alpha=ALPHA, delta=DELTA)
    assert not cert.certified and cert.threshold is None and cert.labels_needed == 29
    more = bound.certify([0.9] * 59, [False] * 59, [0.5, 0.0], alpha=ALPHA, delta=DELTA)
    assert more.certified and more.n_accepted == 59
    hopeless = bound.certify([0.9] * 100, [i % 3 == 0 for i in range(100)], [0.5], alpha=ALPHA, delta=DELTA)
    assert not hopeless.certified and hopeless.labels_needed is None  # 34 % wrong: no amount of labels helps


def test_fixed_sequence_stops_at_the_first_failure() -> None:
    # strictest threshold has a wrong answer among few: fixed sequence stops, Bonferroni goes on
    scores = [0.99] * 5 + [0.8] * 400
    wrong = [True] + [False] * 4 + [False] * 400
    assert not bound.certify(scores, wrong, [0.9, 0.5], alpha=ALPHA, delta=DELTA).certified
    assert bound.certify(scores, wrong, [0.9, 0.5], alpha=ALPHA, delta=DELTA, method="bonferroni").certified


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, float("nan"), 1.5])
def test_levels_outside_the_unit_interval_are_refused(alpha: float) -> None:
    with pytest.raises(ValueError, match=r"within \(0, 1\)"):
        bound.certify([0.5], [False], [0.0], alpha=alpha, delta=DELTA)


def test_thresholds_must_go_strict_to_lax() -> None:
    with pytest.raises(ValueError, match="strictest"):
        bound.certify([0.5], [False], [0.1, 0.9], alpha=ALPHA, delta=DELTA)
