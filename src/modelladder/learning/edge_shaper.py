"""What an edge rung sees: retrieved demonstrations, selected tools, a compacted history.

:class:`EdgeShaper` is the learning side of the ladder's one shaping seam
(:class:`modelladder.ladder.shaping.Shaper`): the ladder asks it, per edge attempt, for the
messages and the contract that rung should get, and keeps what it did on the attempt, so
the trace says what the model saw. Every rule is the policy's (``examples_k``,
``examples_max_distance``, ``max_tools``, ``history_budget_tokens``); higher rungs always
get the step as sent. The order matters for the KV-cache: system text and the (selected)
tool list first, then the demonstrations, then the conversation.

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
from modelladder.learning.demos import demo_messages
from modelladder.learning.example_query import step_query
from modelladder.learning.tool_selection import select_tools

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
        pol = req.policy
        if not pol.examples_k or self.index is None:
            return [], 0, 0
        want = pol.examples_k
        raw = self.index.search(req.step_key, step_query(convo), want * 3 + 2, exclude_ids=(req.run_id,),
                                max_distance=pol.examples_max_distance)  # fmt: skip
        contract = req.step.contract
        hits: list[Hit] = []
        leaked = invalid = 0
        for h in raw:
            ex = h.example
            if (req.episode_id and getattr(ex, "episode", None) == req.episode_id) or (
                self.exclude is not None and self.exclude(h, req)
            ):
                leaked += 1
                continue
            if contract is not None and not contract.validate(ex.text, ex.messages).ok:
                invalid += 1
                continue
            hits.append(h)
            if len(hits) == want:
                break
        return hits, leaked, invalid

    def shape(self, req: ShapeRequest) -> RungView | None:
        pol = req.policy
        lead = [m for m in req.messages if m.get("role") in ("system", "developer")]
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
            keep = [c.get("name") for h in hits if isinstance(h.example.value, list)
                    for c in h.example.value if isinstance(c, dict)]  # fmt: skip
            names = select_tools(contract.tools, convo, pol.max_tools, keep=[str(k) for k in keep])
            narrowed = contract.offering(names)
            applied["tools"] = names
        if not applied:
            return None
        return RungView(lead + demos + convo, narrowed, applied)
