"""The pure rules of cool-downs and Retry-After (a fake clock; no endpoint): the gateway tests
(tests/gateway/test_gateway_faults.py) check the same against a real misbehaving server."""

from __future__ import annotations

import pytest

from modelladder.backends.http_guard import retry_after_s
from modelladder.ladder.cooldown import CooldownPolicy, Cooldowns
from modelladder.ladder.outcome import Attempt
from modelladder.ladder.policy import MAX_RETRY_WAIT_S, Policy, Stop, TryRung, next_action
from tests.support.ladder import FLEET


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_consecutive_faults_trip_doubling_cooldowns_and_a_success_clears_them() -> None:
    clock = Clock()
    c = Cooldowns(CooldownPolicy(after_failures=3, cooldown_s=2.0, max_cooldown_s=5.0), clock)
    c.observe("big", "server_error")
    c.observe("big", "timeout")
    c.observe("big", None)  # an answer resets the count
    c.observe("big", "timeout")
    c.observe("big", "timeout")
    assert c.cooling() == {}
    c.observe("big", "timeout")
    assert c.cooling() == {"big": 2.0}
    clock.t += 2.0
    assert c.cooling() == {}  # back, on probation: one more fault trips it again, doubled
    c.observe("big", "unreachable")
    assert c.cooling() == {"big": 4.0}
    clock.t += 4.0
    c.observe("big", "unreachable")
    assert c.cooling() == {"big": 5.0}  # capped
    (h,) = c.health()
    assert h.cooldowns_total == {"timeout": 1, "unreachable": 2} and h.failures == 5
    clock.t += 5.0
    c.observe("big", None)
    assert c.cooling() == {} and c.health()[0].failures == 0


def test_contract_failures_and_local_errors_never_cool_a_rung() -> None:
    c = Cooldowns(CooldownPolicy(after_failures=1), Clock())
    for code in ("context_overflow", "model_missing", "internal"):
        c.observe("tiny", code)
    assert c.cooling() == {}


def test_retry_after_cools_at_once_even_below_the_threshold() -> None:
    clock = Clock()
    c = Cooldowns(CooldownPolicy(after_failures=0), clock)
    c.observe("big", "rate_limited", retry_after_s=7.0)
    assert c.cooling() == {"big": 7.0}
    c.observe("big", "server_error")  # after_failures=0: only Retry-After cools
    clock.t += 7.0
    assert c.cooling() == {}


def _limited(rung: str, retry_after: float | None) -> Attempt:
    return Attempt(0, rung, "cloud", error="rate_limited", retry_after_s=retry_after)


def test_next_action_skips_cooling_rungs_and_says_why_it_stops() -> None:
    pol = Policy()
    act = next_action(pol, FLEET.rungs, [], 0.0, {"tiny": 3.0})
    assert isinstance(act, TryRung) and act.rung.name == "small"
    assert next_action(pol, FLEET.rungs, [], 0.0, {r.name: 1.0 for r in FLEET.rungs}) == Stop("cooling_down")


def test_retry_after_is_waited_out_only_when_nothing_else_is_left_and_it_fits() -> None:
    pol = Policy(max_rung="big", first_rung="big")  # big alone
    act = next_action(pol, FLEET.rungs, [_limited("big", 1.5)], 0.2, {"big": 1.3})
    assert isinstance(act, TryRung) and act.rung.name == "big" and act.wait_s == 1.3 and act.timeout_s is None
    budget = Policy(max_rung="big", first_rung="big", latency_budget_s=2.0)
    act = next_action(budget, FLEET.rungs, [_limited("big", 1.5)], 0.2, {"big": 1.3})
    assert isinstance(act, TryRung) and act.timeout_s == pytest.approx(2.0 - 0.2 - 1.3)
    # past the budget: stop now rather than wait
    assert isinstance(next_action(budget, FLEET.rungs, [_limited("big", 5)], 0.2, {"big": 4.9}), Stop)
    # without a budget, waits are capped
    assert isinstance(
        next_action(pol, FLEET.rungs, [_limited("big", 60)], 0.0, {"big": MAX_RETRY_WAIT_S + 1}), Stop
    )
    # no Retry-After: no wait, no retry; and at most one retry
    assert next_action(pol, FLEET.rungs, [_limited("big", None)], 0.0) == Stop("exhausted")
    twice = [_limited("big", 1.0), _limited("big", 1.0)]
    assert next_action(pol, FLEET.rungs, twice, 0.0, {"big": 1.0}) == Stop("exhausted")
    # another rung left: it goes first, no waiting
    act = next_action(Policy(), FLEET.rungs, [_limited("tiny", 1.0)], 0.0, {"tiny": 1.0})
    assert isinstance(act, TryRung) and act.rung.name == "small" and act.wait_s == 0.0


def test_retry_after_headers() -> None:
    from datetime import UTC, datetime

    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_s({"retry-after": "Wed, 01 Jan 2025 12:00:30 GMT"}, now) == 30.0
    assert retry_after_s({"retry-after": "soon"}) is None and retry_after_s({}) is None
    assert retry_after_s({"retry-after": "-5"}) == 0.0
