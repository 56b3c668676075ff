"""The one seam through which learning reaches what an edge rung sees.

A :class:`Shaper` may hand a rung other messages (retrieved demonstrations, shortened tool
outputs) and a narrower contract (only the tools it offers) than the step as sent. The ladder
stays the only caller of backends and the only judge: the attempt is decoded and validated
against the shaped contract, the conversation's own messages stay what validation and the
loop guard read, and what the shaper did is kept on the attempt (``Attempt.shaping``) and
so in the trace, where distillation and audits read what the model saw.

The decision (whether to shape, and how much) is the policy's (``examples_k``,
``max_tools``, ``history_budget_tokens``); the I/O (an index lookup) is the shaper's, which
lives in :mod:`modelladder.learning` and plugs in here, so the ladder imports no learning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from modelladder.contracts.base import Contract
    from modelladder.fleet_types import Policy, Rung
    from modelladder.ladder.step import Step

__all__ = ["RungView", "Shaper", "ShapeRequest"]


@dataclass(frozen=True)
class ShapeRequest:
    """What a shaper is asked about: one rung's attempt at one step. ``messages`` is the prompt
    as the ladder built it (the step's system text first); ``episode_id`` and ``run_id`` let
    the shaper leave out the conversation's own traces (no leak)."""

    step: Step
    step_key: str
    messages: list[dict[str, Any]]
    rung: Rung
    policy: Policy
    run_id: str
    episode_id: str | None


@dataclass(frozen=True)
class RungView:
    """What the rung sees instead: messages, the contract it decodes against (``None``: the
    step's), and ``applied``, a JSON-able record of what was changed (ids of examples shown,
    the tools offered, the compaction rule) that goes into the trace."""

    messages: list[dict[str, Any]]
    contract: Contract | None = None
    applied: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Shaper(Protocol):
    """Anything with this method: :class:`modelladder.learning.EdgeShaper`, or a test's own.
    Return ``None`` to leave the attempt as it is. A shaper that raises is logged and ignored
    (the attempt goes ahead unshaped): learning may make the edge smarter, never break it."""

    def shape(self, request: ShapeRequest) -> RungView | None: ...
