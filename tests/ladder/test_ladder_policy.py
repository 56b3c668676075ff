"""Ladder policy: escalation on each reason, edge_only, budgets, max attempts, Unresolved.

These tests are about *policy*, so a scripted backend stands in for models here (the
real models are exercised in test_model_e2e.py)."""

from __future__ import annotations

from typing import Any

import pytest

from modelladder import (
    BackendError,
    Choice,
    Generation,
    JsonSchema,
    Ladder,
    Policy,
    Resolved,
    ScriptedBackend,
    Step,
    Unresolved,
    UnresolvedError,
)
from modelladder.backends import Call
from modelladder.fleet import parse_fleet
from modelladder.ladder.outcome import Attempt, Confidence
from modelladder.ladder.policy import Stop, TryRung, eligible_rungs, judge, next_action
from modelladder.traces import TraceStore
from tests.support.ladder import FLEET, gen


def ladder(**scripts: list[Any]) -> tuple[Ladder, dict[str, ScriptedBackend]]:
    """A ladder over FLEET whose rungs replay the given answers (a Generation, or an exception)."""
    backends = {name: ScriptedBackend.replaying(name, s) for name, s in scripts.items()}
    return Ladder(FLEET, backends=backends), backends


CHOICE = Step("route", Choice(["a", "b"]))
MSG = [{"role": "user", "content": "pick"}]


def test_first_rung_accepted_when_valid_and_confident() -> None:
    lad, b = ladder(tiny=[gen("a")], small=[gen("b")], big=[gen("b")])
    r = lad.run(CHOICE, MSG)
    assert isinstance(r, Resolved) and r.rung == "tiny" and r.value == "a" and len(r.attempts) == 1
    assert b["small"].calls == [] and b["big"].calls == []


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (gen("c"), "contract:not_a_choice"),
        (gen(""), "contract:empty_output"),
        (gen("a", finish="length"), "truncated"),
        (BackendError("timeout", "slow"), "backend:timeout"),
        (BackendError("unreachable", "down"), "backend:unreachable"),
        (RuntimeError("segfault-ish"), "backend:internal"),
        (gen("a", logprobs=[-2.0, -2.0]), "low_confidence:mean"),
        (gen("a", logprobs=[-0.01] * 20 + [-9.0]), "low_confidence:min"),
    ],
)
def test_escalates_on_each_reason(first: Any, reason: str) -> None:
    lad, _ = ladder(tiny=[first], small=[gen("b")], big=[gen("b")])
    r = lad.run(CHOICE, MSG, policy=Policy(min_mean_logprob=-1.0, min_token_logprob=-5.0))
    assert isinstance(r, Resolved) and r.rung == "small" and r.value == "b"
    assert r.attempts[0].escalation_reason == reason and not r.attempts[0].accepted and r.attempts[1].accepted


def test_unresolved_carries_every_attempt_and_never_a_value() -> None:
    lad, _ = ladder(tiny=[gen("x")], small=[gen("y")], big=[BackendError("unreachable", "no network")])
    r = lad.run(CHOICE, MSG)
    assert isinstance(r, Unresolved) and r.reason == "exhausted"
    assert [a.rung for a in r.attempts] == ["tiny", "small", "big"]
    assert [a.escalation_reason for a in r.attempts] == ["contract:not_a_choice"] * 2 + [
        "backend:unreachable"
    ]
    with pytest.raises(UnresolvedError, match="unresolved"):
        _ = r.value


def test_edge_only_is_enforced() -> None:
    lad, b = ladder(tiny=[gen("x")], small=[gen("x")], big=[gen("a")])
    r = lad.run(CHOICE, MSG, policy=Policy(edge_only=True))
    assert isinstance(r, Unresolved) and b["big"].calls == []
    assert all(a.placement == "edge" for a in r.attempts)


def test_max_rung_and_max_attempts() -> None:
    lad, b = ladder(tiny=[gen("x")], small=[gen("a")], big=[gen("a")])
    r = lad.run(CHOICE, MSG, policy=Policy(max_rung="tiny"))
    assert isinstance(r, Unresolved) and [a.rung for a in r.attempts] == ["tiny"]
    r = lad.run(CHOICE, MSG, policy=Policy(max_attempts=1))
    assert isinstance(r, Unresolved) and r.reason == "max_attempts"
    assert b["small"].calls == [] and b["big"].calls == []


def test_latency_budget_stops_climbing() -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    def slow(name: str, text: str) -> ScriptedBackend:
        def handler(call: Call) -> Generation:
            now[0] += 2.0
            assert (
                call.params.timeout_s is not None and call.params.timeout_s <= 3.0
            )  # gets the remaining budget
            return gen(text)

        return ScriptedBackend(name, handler)

    backends = {"tiny": slow("tiny", "x"), "small": slow("small", "a"), "big": slow("big", "a")}
    r = Ladder(FLEET, backends=backends, clock=clock).run(CHOICE, MSG, policy=Policy(latency_budget_s=3.0))
    assert isinstance(r, Resolved) and r.rung == "small"  # 2 s used, 1 s left: one more attempt
    backends = {"tiny": slow("tiny", "x"), "small": slow("small", "x"), "big": slow("big", "a")}
    r = Ladder(FLEET, backends=backends, clock=clock).run(CHOICE, MSG, policy=Policy(latency_budget_s=3.0))
    assert isinstance(r, Unresolved) and r.reason == "latency_budget" and len(r.attempts) == 2


def test_costs_follow_placement() -> None:
    lad, _ = ladder(tiny=[gen("x", latency=2.0)], small=[gen("x", latency=1.0)], big=[gen("a")])
    r = lad.run(CHOICE, MSG)
    assert r.attempts[0].cost_usd == pytest.approx(0.002)  # 2 s x $0.001/s
    assert r.attempts[1].cost_usd == pytest.approx(0.002)  # 1 s x $0.002/s
    assert r.attempts[2].cost_usd == pytest.approx((10 * 1.0 + 3 * 4.0) / 1e6)  # tokens at list price
    assert r.cost_usd == pytest.approx(sum(a.cost_usd for a in r.attempts))


def test_specialist_rungs_only_for_their_step() -> None:
    fleet = parse_fleet(
        {
            "rung": [
                {"name": "base", "backend": "llamacpp", "path": "x", "params": 100},
                {
                    "name": "spec",
                    "backend": "llamacpp",
                    "path": "x",
                    "params": 100,
                    "adapter": "a.gguf",
                    "step": "route",
                },
            ],
            "step": {"route": {"first_rung": "spec"}},
        }
    )
    assert [r.name for r in eligible_rungs(fleet.policy_for("route"), fleet.rungs)] == ["spec", "base"]
    assert [r.name for r in eligible_rungs(fleet.policy_for("other"), fleet.rungs)] == ["base"]


def test_next_action_is_pure() -> None:
    pol = Policy()
    a = Attempt(index=0, rung="tiny", placement="edge", escalation_reason="contract:x")
    act = next_action(pol, FLEET.rungs, [a], elapsed_s=0.5)
    assert isinstance(act, TryRung) and act.rung.name == "small" and act.timeout_s is None
    assert next_action(Policy(latency_budget_s=0.4), FLEET.rungs, [a], 0.5) == Stop("latency_budget")
    assert next_action(Policy(edge_only=True, max_rung="tiny"), FLEET.rungs, [a], 0) == Stop("exhausted")


def test_judge_ignores_confidence_without_value_tokens() -> None:
    from modelladder.contracts.base import Verdict

    a = Attempt(
        index=0, rung="t", placement="edge", verdict=Verdict.passed("a"), confidence=Confidence(None, None, 0)
    )
    assert judge(a, Policy(min_mean_logprob=-0.1)) is None


def test_a_decline_is_judged_by_its_decision_probability() -> None:
    """A decline has no value token, so only the call/decline choice's probability can
    escalate it; without the threshold it passes as before."""
    from modelladder.contracts.base import Verdict

    def decline(decision: float | None) -> Attempt:
        return Attempt(index=0, rung="t", placement="edge", verdict=Verdict.passed([]),
                       confidence=Confidence(None, None, 0, decision_logprob=decision))  # fmt: skip

    pol = Policy(min_decision_logprob=-0.7)
    assert judge(decline(-1.2), pol) == "low_confidence:decision"
    assert judge(decline(-0.1), pol) is None
    assert judge(decline(None), pol) is None  # not measured (a remote rung): nothing to judge
    assert judge(decline(-1.2), Policy()) is None
    assert Confidence(None, None, 0, decision_logprob=-1.2).signals() == {"decision_logprob": -1.2}


def test_empty_messages_rejected_before_any_model_call() -> None:
    lad, b = ladder(tiny=[gen("a")])
    with pytest.raises(ValueError, match="non-empty list"):
        lad.run(CHOICE, [])
    with pytest.raises(ValueError, match="role"):
        lad.run(CHOICE, [{"role": "wizard", "content": "x"}])
    assert b["tiny"].calls == []


def test_every_run_is_traced(tmp_path) -> None:  # noqa: ANN001
    store = TraceStore(tmp_path / "t.sqlite")
    lad = Ladder(
        FLEET,
        store=store,
        backends={
            "tiny": ScriptedBackend.replaying("tiny", [gen("{}")]),
            "small": ScriptedBackend.replaying("small", [gen('{"n": 3}')]),
            "big": ScriptedBackend.replaying("big", [gen('{"n": 3}')]),
        },
    )
    step = Step(
        "shape", JsonSchema({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    )
    r = lad.run(step, MSG, tags={"suite": "policy"})
    rec = store.get_run(r.run_id)
    assert rec.outcome == "resolved" and rec.rung == "small" and len(rec.attempts) == 2
    assert rec.attempts[0].escalation_reason == "contract:schema_violation"
    assert rec.contract_digest == step.contract.digest()
    # the contract itself is stored, so the trace can be replayed / used for training
    from modelladder.contracts import contract_from_spec

    assert contract_from_spec(rec.contract).digest() == step.contract.digest()
