"""Closed loops: each item as a workflow, the ladder's own calls executed and fed back.

Per turn: the user's messages, then hops until the ladder stops calling. A hop may make
several calls (BFCL's function-calling handlers allow parallel calls; two items of
``long_context`` need 34 ``rm`` calls in one turn, more than the step limit allows one by
one); they run in order. A hop whose answer
is a decline (``[]``), a text reply or no accepted answer ends the turn (BFCL's loop ends a
turn when the model answers without a call; an unresolved step has no call to run). A turn
that reaches ``step_limit`` hops (BFCL's ``MAXIMUM_STEP_LIMIT``, 20) force-terminates the
workflow, which BFCL scores as a failure. Task success is BFCL's official
``multi_turn_checker`` on the trajectory (:func:`official_check`).
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelladder.bench.agent.data import AgentItem
from modelladder.bench.agent.execute import ToolEnv, parse_call, render_call
from modelladder.bench.agent.history import call_messages, end_of_turn, gold_arguments

__all__ = ["Ask", "DEFAULT_STEP_LIMIT", "Hop", "LoopResult", "official_check", "run_loop"]

DEFAULT_STEP_LIMIT = 20


@dataclass
class Hop:
    """What the loop asks: the transcript so far, the tools, and (for the oracle only) the gold
    calls of this turn that have not been made yet, as ``(name, kwargs)``."""

    item: AgentItem
    turn: int
    hop: int
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    gold_rest: list[tuple[str, dict[str, Any]]]


# ask(hop) -> (calls or None when unresolved, a record of the hop)
Ask = Callable[[Hop], tuple[list[dict[str, Any]] | None, dict[str, Any]]]


@dataclass
class LoopResult:
    trajectory: list[list[list[str]]]  # turn -> step -> call strings (BFCL's model_result)
    hops: list[dict[str, Any]] = field(default_factory=list)
    force_terminated: bool = False


def _remaining_gold(env: ToolEnv, gold: Sequence[str], made: Sequence[str]) -> list[str]:
    """The gold calls of the turn not matched (normalised, as a multiset) by a call made."""
    pending = [env.normalised(parse_call(c)) for c in made]
    rest = []
    for g in gold:
        n = env.normalised(parse_call(g))
        if n in pending:
            pending.remove(n)
        else:
            rest.append(g)
    return rest


def run_loop(item: AgentItem, ask: Ask, *, step_limit: int = DEFAULT_STEP_LIMIT, **limits: Any) -> LoopResult:
    env = ToolEnv.fresh(item.entry, long_context=item.long_context, **limits)
    messages: list[dict[str, Any]] = []
    out = LoopResult([])
    for t, user in enumerate(item.turns):
        messages += user
        tools = item.tools_at(t)
        steps: list[list[str]] = []
        made: list[str] = []
        for h in range(step_limit + 1):
            if h == step_limit:
                out.force_terminated = True
                break
            rest = [gold_arguments(env, g) for g in _remaining_gold(env, item.gold[t], made)]
            hop = Hop(item, t, h, list(messages), tools, rest)
            calls, rec = ask(hop)
            rec.update(turn=t, hop=h)
            out.hops.append(rec)
            if not calls:
                break
            strings = [render_call(c["name"], c.get("arguments") or {}) for c in calls]
            results = [env.run(s) for s in strings]
            rec["calls"] = strings
            rec["outputs"] = [r.output[:500] for r in results]
            rec["call_errors"] = [r.error for r in results]
            steps.append(strings)
            made += strings
            messages += call_messages(
                [(c["name"], c.get("arguments") or {}) for c in calls], results, f"t{t}h{h}"
            )
        out.trajectory.append(steps)
        if out.force_terminated:
            break
        messages.append(end_of_turn())
    return out


def official_check(item: AgentItem, trajectory: list[list[list[str]]]) -> dict[str, Any]:
    """BFCL's ``multi_turn_checker`` on a trajectory, as BFCL's eval runner calls it (a
    trajectory with fewer turns than the gold was force-terminated: invalid).

    The checker ``eval()``s call strings; every string handed to it has been parsed by
    :func:`parse_call` first (a plain call with literal arguments, which is what
    :func:`render_call` writes), so nothing else can run. Its executor keeps instances in its
    module globals keyed by model name: a fresh name per check, removed afterwards.
    """
    from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import multi_turn_checker

    if len(trajectory) != len(item.gold):
        return {"valid": False, "error_type": "multi_turn:force_terminated",
                "error_message": f"{len(trajectory)} of {len(item.gold)} turns were run"}  # fmt: skip
    for turn in trajectory:
        for step in turn:
            for call in step:
                parse_call(call)  # raises CallParseError: never reaches eval
    name = f"modelladder_{uuid.uuid4().hex[:12]}"
    try:
        res = multi_turn_checker(
            copy.deepcopy(trajectory), item.gold, copy.deepcopy(item.entry), item.category, name
        )
    finally:
        prefix = re.sub(r"[-./:]", "_", name)
        for key in [k for k in vars(multi_turn_utils) if k.startswith(prefix)]:
            del vars(multi_turn_utils)[key]
    return {k: v for k, v in res.items() if k in ("valid", "error_type", "error_message")}
