"""The step-level harness: every gold call of every item, and every end of turn, is a step.

For item ``i`` and gold call ``k`` the request is the item's tools, the user turns so far and
the gold calls before ``k`` as assistant ``tool_calls`` with their real outputs (executed on
fresh class instances). The prediction is scored three ways:

* ``name_ok``: it calls the gold call's function;
* ``exact_ok``: the same call after normalisation (:meth:`ToolEnv.normalised`: bound to the
  method's signature, defaults filled in, so positional/keyword and spelt-out defaults agree);
* ``exec_ok``: executed on a copy of the state just before gold call ``k``, it returns the same
  output and leaves the same state (every public attribute) as the gold call.

At the end of a turn the right answer is no call (a decline); all three scores are "declined"
there. A step with no accepted answer, a decline where a call was due, a call that does not
parse or names no function fails every score, with its reason. ``later_gold`` notes a call
that is exactly one of the turn's *later* gold calls (order within a turn is often free), for
diagnosis only: the scores are against call ``k``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelladder.bench.agent.data import AgentItem
from modelladder.bench.agent.execute import CallParseError, ToolEnv, parse_call
from modelladder.bench.agent.history import call_messages, end_of_turn, gold_arguments

__all__ = ["StepCase", "iter_steps", "score_step"]


@dataclass
class StepCase:
    """One step: what the model is given, and what is right."""

    item: AgentItem
    turn: int
    k: int  # index of the gold call within the turn; == len(gold[turn]) at the end of turn
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    gold: str | None  # None: end of turn, the right answer is no call
    env: ToolEnv = field(repr=False)  # the state just before this step (do not mutate)
    later: list[str] = field(default_factory=list, repr=False)

    @property
    def id(self) -> str:
        return f"{self.item.id}#t{self.turn}k{self.k}"

    @property
    def gold_arguments(self) -> tuple[str, dict[str, Any]] | None:
        return gold_arguments(self.env, self.gold) if self.gold is not None else None


def iter_steps(item: AgentItem, **limits: Any) -> Iterator[StepCase]:
    """The steps of one item in order (each one's prompt extends the previous one's). The
    environment advances by the gold call after each step is yielded, so score a step before
    asking for the next."""
    env = ToolEnv.fresh(item.entry, long_context=item.long_context, **limits)
    messages: list[dict[str, Any]] = []
    for t, user in enumerate(item.turns):
        messages += user
        tools = item.tools_at(t)
        gold = item.gold[t]
        for k, call in enumerate(gold):
            yield StepCase(item, t, k, list(messages), tools, call, env, later=list(gold[k + 1 :]))
            named = gold_arguments(env, call)
            messages += call_messages([named], [env.run(call)], f"t{t}k{k}")
        yield StepCase(item, t, len(gold), list(messages), tools, None, env)
        messages.append(end_of_turn())


def _call_string(call: dict[str, Any]) -> str:
    from modelladder.bench.agent.execute import render_call

    return render_call(call["name"], call.get("arguments") or {})


def score_step(
    case: StepCase, calls: Sequence[dict[str, Any]] | None, why: str | None = None
) -> dict[str, Any]:
    """Score a prediction (the contract's value: ``[{"name", "arguments"}]``, ``[]`` for a
    decline, ``None`` for no accepted answer, with ``why``)."""
    out: dict[str, Any] = {"pred": None, "name_ok": False, "exact_ok": False, "exec_ok": False}
    if calls is None:
        return {**out, "reason": f"no_answer:{why or 'unresolved'}"}
    preds = [_call_string(c) for c in calls]
    out["pred"] = preds
    if case.gold is None:
        ok = not preds
        return {
            **out,
            "name_ok": ok,
            "exact_ok": ok,
            "exec_ok": ok,
            "reason": None if ok else "called_at_end_of_turn",
        }
    if not preds:
        return {**out, "reason": "declined"}
    if len(preds) > 1:
        return {**out, "reason": "several_calls"}
    try:
        mine, gold = parse_call(preds[0]), parse_call(case.gold)
    except CallParseError as exc:
        return {**out, "reason": f"parse_error:{exc}"}
    out["name_ok"] = mine.name == gold.name
    norm = case.env.normalised(mine)
    out["exact_ok"] = norm is not None and norm == case.env.normalised(gold)
    out["later_gold"] = norm is not None and any(
        norm == case.env.normalised(parse_call(g)) for g in case.later
    )
    trial, ref = case.env.copy(), case.env.copy()
    got, want = trial.run(preds[0]), ref.run(case.gold)
    same_out, same_state = got.output == want.output, trial.state() == ref.state()
    out["exec_ok"] = same_out and same_state
    if got.error:
        out["exec_error"] = got.error
    if not out["exec_ok"]:
        out["reason"] = (
            ("wrong_function" if not out["name_ok"] else "wrong_arguments")
            + (f":{got.error}" if got.error else "")
            + ("" if same_out else ":output_differs")
            + ("" if same_state else ":state_differs")
        )
    else:
        out["reason"] = None
    return out
