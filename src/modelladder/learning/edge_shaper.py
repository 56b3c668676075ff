"""What an edge rung sees: retrieved demonstrations, selected tools, a compacted history.

:class:`EdgeShaper` is the learning side of the ladder's one shaping seam
(:class:`modelladder.ladder.shaping.Shaper`): the ladder asks it, per edge attempt, for the
messages and the contract that rung should get, and keeps what it did on the attempt, so
the trace says what the model saw. Every rule is the policy's (``examples_k``,
``examples_max_distance``, ``max_tools``, ``history_budget_tokens``); higher rungs always
get the step as sent. The order matters for the KV-cache: system text and the (selected)
tool list first, then the earlier turns, then the demonstrations, then the current request
and what the agent did for it. Examples retrieved for a request stay the same for every
step of it, so each step extends the previous step's prompt (a first probe that changed
the system text per step lost the shared prefix and 55 % in latency).

No leak: an example from the same conversation (episode) or the same run is never shown,
and an example that no longer validates against the step's contract today (the contract
changed) is skipped and counted (``examples_invalid``), never shown to a model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelladder.contracts.tools import ToolCalls
from modelladder.ladder.shaping import RungView, ShapeRequest
from modelladder.learning.compaction import compact_history
from modelladder.learning.demos import demo_messages, last_turn
from modelladder.learning.example_query import step_query
from modelladder.learning.tool_selection import called_tools, select_tools

if TYPE_CHECKING:
    from modelladder.learning.example_index import ExampleIndex, Hit

__all__ = ["EdgeShaper"]

Exclude = Callable[["Hit", ShapeRequest], bool]


class EdgeShaper:
    """Shapes edge attempts from an :class:`ExampleIndex` (``None``: no examples, tool
    selection and compaction only). ``exclude(hit, request)`` may rule out more examples
    (a benchmark's fold or "only earlier items" rule)."""

    def __init__(self, index: ExampleIndex | None = None, *, exclude: Exclude | None = None) -> None:
        self.index = index
        self.exclude = exclude

    def _hits(self, req: ShapeRequest, convo: list[dict[str, Any]]) -> tuple[list[Hit], int, int]:
        """The examples to show, nearest first. Retrieval is keyed on the user's current
        request (its last user message), not on the calls made since, so the examples stay
        the same while the agent works on that request and every later step of the turn
        reuses the prompt prefix from the KV cache. Of several steps of one example turn
        (the same request in the same conversation) the latest is kept: it shows the whole
        sequence of calls the teacher made for a request like this one."""
        pol = req.policy
        if not pol.examples_k or self.index is None:
            return [], 0, 0
        want = pol.examples_k
        turn = last_turn(convo)
        query = (
            str(turn[0].get("content") or "") if turn and turn[0].get("role") == "user" else step_query(convo)
        )
        raw = self.index.search(req.step_key, query, want * 8 + 4, exclude_ids=(req.run_id,),
                                max_distance=pol.examples_max_distance)  # fmt: skip
        contract = req.step.contract
        chosen: dict[tuple[str | None, str], Hit] = {}
        leaked = invalid = 0
        for h in raw:
            ex = h.example
            if (req.episode_id and ex.episode == req.episode_id) or (
                self.exclude is not None and self.exclude(h, req)
            ):
                leaked += 1
                continue
            if contract is not None and not contract.validate(ex.text, ex.messages).ok:
                invalid += 1
                continue
            head = last_turn(ex.messages)[:1]
            group = (ex.episode, " ".join(str(head[0].get("content") or "").split()) if head else ex.query)
            best = chosen.get(group)
            if best is None and len(chosen) == want:
                continue
            if best is None or len(ex.messages) > len(best.example.messages):
                chosen[group] = h
        return list(chosen.values()), leaked, invalid

    def shape(self, req: ShapeRequest) -> RungView | None:
        pol = req.policy
        n_lead = 0
        while n_lead < len(req.messages) and req.messages[n_lead].get("role") in ("system", "developer"):
            n_lead += 1
        lead, convo = list(req.messages[:n_lead]), list(req.messages[n_lead:])
        applied: dict[str, Any] = {}
        if pol.history_budget_tokens:
            convo, rule = compact_history(convo, pol.history_budget_tokens)
            if rule is not None:
                applied["compaction"] = rule
        hits, leaked, invalid = self._hits(req, convo)
        demos: list[dict[str, Any]] = []
        if hits:
            nearest_last = list(reversed(hits))
            demos = demo_messages([(h.example.id, h.example.messages, h.example.value, h.example.text)
                                   for h in nearest_last])  # fmt: skip
            applied["examples"] = [{"id": h.example.id, "distance": round(h.distance, 4)} for h in hits]
        if invalid:
            applied["examples_invalid"] = invalid
        if leaked:
            applied["examples_excluded"] = leaked
        contract = req.step.contract
        narrowed = None
        if pol.max_tools and isinstance(contract, ToolCalls) and len(contract.tools) > pol.max_tools:
            # the tools the examples use (their calls and answers, all tool_calls in the demos)
            # are kept too: they are evidence of what the request needs
            names = select_tools(contract.tools, convo, pol.max_tools, keep=called_tools(demos))
            narrowed = contract.offering(names)
            applied["tools"] = names
        # the examples go just before the current request: the system text, the tool list and
        # the earlier turns stay a shared prefix
        at = max((i for i, m in enumerate(convo) if m.get("role") == "user"), default=0)
        convo = convo[:at] + demos + convo[at:]
        if not applied:
            return None
        return RungView(lead + convo, narrowed, applied)
