"""The ladder's decision logic, kept pure: functions of the policy, the rungs and the
attempts so far. No models, no clocks, no I/O -- so every branch is tested without a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelladder.contracts.tools import Answer
from modelladder.fleet_types import Policy, Rung
from modelladder.ladder.loops import LOOP_REASON
from modelladder.ladder.outcome import SKIPPED, Attempt

if TYPE_CHECKING:
    from modelladder.ladder.gate import GateVerdict

__all__ = [
    "MAX_RETRY_WAIT_S", "Policy", "Stop", "TryRung", "eligible_rungs", "judge", "may_skip", "next_action",
    "shadow_rung",
]  # fmt: skip

#: The longest the ladder waits for a rate-limited rung's ``Retry-After`` when the step has no
#: latency budget (with one, the wait must leave some of the budget for the attempt itself).
MAX_RETRY_WAIT_S = 10.0


def eligible_rungs(policy: Policy, rungs: list[Rung]) -> list[Rung]:
    """The rungs a step may use, smallest first, honouring ``first_rung``, ``max_rung`` and
    ``edge_only``; a ``memo`` rung (declare it with the smallest ``params``, so it comes first) only where ``memo`` is on and the step
    declares no ``side_effects``."""
    ordered = sorted(rungs, key=lambda r: (r.placement != "edge", r.params))
    names = [r.name for r in ordered]
    if policy.first_rung is not None:
        if policy.first_rung not in names:
            raise ValueError(
                f"policy.first_rung {policy.first_rung!r} is not in the fleet ({', '.join(names)})"
            )
        first = ordered[names.index(policy.first_rung)]
        ordered = [first] + [r for r in ordered if r.name != first.name and r.adapter is None]
    else:
        # specialists (adapters) are only tried when a step asks for them
        ordered = [r for r in ordered if r.adapter is None]
    if policy.max_rung is not None:
        cut = [r.name for r in ordered]
        if policy.max_rung not in cut:
            raise ValueError(f"policy.max_rung {policy.max_rung!r} is not in the fleet ({', '.join(cut)})")
        ordered = ordered[: cut.index(policy.max_rung) + 1]
    if policy.edge_only:
        ordered = [r for r in ordered if r.placement == "edge"]
    if not policy.memo or policy.side_effects:
        ordered = [r for r in ordered if r.backend != "memo"]
    return ordered


def judge(attempt: Attempt, policy: Policy, gate: GateVerdict | None = None) -> str | None:
    """Why this attempt must not be accepted, or ``None`` if it passes. The order is the
    order of trust: a backend error, then truncation, then the contract, then the loop
    guard, then confidence. A free-text answer of a call-or-answer step skips the gate, as
    a free-text step does: there is no value whose tokens the gate could measure.

    ``gate``: a calibrated gate's verdict on this attempt. When there is one it *replaces* the
    log-probability thresholds: its guarantee was measured on contract-passing answers with no
    other filter, and keeping a subset of the accepted answers by another rule would not keep it.
    """
    if attempt.error is not None:
        return f"backend:{attempt.error}"
    if attempt.finish_reason == "length" and not policy.accept_truncated:
        return "truncated"
    if attempt.verdict is None or not attempt.verdict.ok:
        reason = attempt.verdict.reason if attempt.verdict is not None else "not_validated"
        return f"contract:{reason}"
    if attempt.repeated_call:
        return LOOP_REASON
    conf = attempt.confidence
    if (
        gate is None
        and policy.min_decision_logprob is not None
        and conf is not None
        and conf.decision_logprob is not None
        and conf.decision_logprob < policy.min_decision_logprob
    ):
        # the choice to call, decline or answer was a coin toss: the one signal a decline has
        return "low_confidence:decision"
    if isinstance(attempt.value, Answer) and attempt.value.free:
        return None
    if gate is not None:
        return None if gate.accept else gate.reason
    if conf is not None and conf.n_value_tokens > 0:
        if (
            policy.min_mean_logprob is not None
            and conf.mean_logprob is not None
            and conf.mean_logprob < policy.min_mean_logprob
        ):
            return "low_confidence:mean"
        if (
            policy.min_token_logprob is not None
            and conf.min_logprob is not None
            and conf.min_logprob < policy.min_token_logprob
        ):
            return "low_confidence:min"
    return None


def shadow_rung(policy: Policy, rungs: list[Rung], accepted: Attempt, draw: float) -> Rung | None:
    """The rung that checks an accepted answer in the background, or ``None``.

    ``draw`` is a number in [0, 1) fixed per run (a hash of its id, so a replay shadows the
    same runs). Only edge answers are shadowed, by the next eligible rung above the accepting
    one; ``eligible_rungs`` already drops non-edge rungs for ``edge_only`` steps, so such a step
    is shadowed by a larger edge rung or not at all -- its data never leaves the edge.
    """
    if policy.shadow_rate <= 0.0 or draw >= policy.shadow_rate or accepted.placement != "edge":
        return None
    eligible = eligible_rungs(policy, rungs)
    names = [r.name for r in eligible]
    if accepted.rung not in names:
        return None
    above = eligible[names.index(accepted.rung) + 1 :]
    if policy.edge_only:  # eligible_rungs enforces it; say it again where data would leave
        above = [r for r in above if r.placement == "edge"]
    return above[0] if above else None


def may_skip(policy: Policy, rungs: list[Rung], rung: Rung, attempts: list[Attempt], draw: float) -> bool:
    """Whether the ladder may pass over ``rung`` on a skip predictor's word, before it runs.

    Only edge rungs (not a memo: it costs nothing), never for ``edge_only`` steps, never the
    last rung left to try (a skip must hand the step to another rung, not end it); ``draw``
    (fixed per run, in [0, 1)) below ``skip_explore`` tries the edge anyway, so it keeps
    being labelled on the requests it is predicted to fail.
    """
    if not policy.skip_ex_ante or policy.edge_only or draw < policy.skip_explore:
        return False
    if rung.placement != "edge" or rung.backend == "memo":
        return False
    tried = {a.rung for a in attempts}
    return any(r.name != rung.name and r.name not in tried for r in eligible_rungs(policy, rungs))


@dataclass(frozen=True)
class TryRung:
    rung: Rung
    timeout_s: float | None
    wait_s: float = 0.0  # sleep this long first: the rung's Retry-After


@dataclass(frozen=True)
class Stop:
    reason: str  # "exhausted" | "max_attempts" | "latency_budget" | "no_eligible_rung" | "cooling_down"


def next_action(
    policy: Policy,
    rungs: list[Rung],
    attempts: list[Attempt],
    elapsed_s: float,
    cooling: Mapping[str, float] | None = None,
) -> TryRung | Stop:
    """Given the (already judged) attempts so far, what the ladder does next.

    The caller accepts an attempt as soon as :func:`judge` passes it, so this is only asked
    after failures. Each rung is tried once: a deterministic small model that failed a
    contract fails it again. ``cooling``: rungs cooled down (:mod:`modelladder.ladder.cooldown`),
    with the seconds each has left; they are skipped.

    Retry-After: when nothing else is left, a rung whose one attempt was rate-limited with a
    ``Retry-After`` is tried once more after waiting it out, if the wait leaves part of the
    latency budget (or, without a budget, is at most :data:`MAX_RETRY_WAIT_S`); otherwise the
    ladder stops rather than wait past the budget, and never calls the rung early.
    """
    cooling = cooling or {}
    eligible = eligible_rungs(policy, rungs)
    if not eligible:
        return Stop("no_eligible_rung")
    ran = [a for a in attempts if a.error != SKIPPED]  # a skipped rung was not an attempt
    if policy.max_attempts is not None and len(ran) >= policy.max_attempts:
        return Stop("max_attempts")
    remaining = None
    if policy.latency_budget_s is not None:
        remaining = policy.latency_budget_s - elapsed_s
        if remaining <= 0:
            return Stop("latency_budget")
    tried = {a.rung for a in attempts}
    for rung in eligible:
        if rung.name not in tried and rung.name not in cooling:
            return TryRung(rung, remaining)
    for rung in eligible:
        mine = [a for a in attempts if a.rung == rung.name]
        if len(mine) != 1 or mine[0].error != "rate_limited" or mine[0].retry_after_s is None:
            continue
        wait = max(cooling.get(rung.name, 0.0), 0.0)
        if remaining is None and wait <= MAX_RETRY_WAIT_S:
            return TryRung(rung, None, wait_s=wait)
        if remaining is not None and wait < remaining:
            return TryRung(rung, remaining - wait, wait_s=wait)
    if any(r.name in cooling and r.name not in tried for r in eligible):
        return Stop("cooling_down")
    return Stop("exhausted")
