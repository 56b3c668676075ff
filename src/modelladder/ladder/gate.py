"""The one seam between the ladder and whatever learns its gate.

The ladder does not know how a gate is fitted or where it is stored: it is handed an object
with one method, :meth:`Gate.assess`, and receives plain :class:`GateVerdict` values that the
pure :func:`modelladder.ladder.policy.judge` reads. The learning package
(:mod:`modelladder.learning`) implements it over the trace store; the ladder never imports
that package (it sits above the ladder), and ``policy.py`` never sees a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from modelladder.ladder.outcome import Attempt

__all__ = ["Gate", "GateVerdict", "SkipPredictor", "SkipVerdict"]


@dataclass(frozen=True)
class GateVerdict:
    """A gate's decision on one attempt that passed its contract.

    ``reason`` is the escalation reason when ``accept`` is false: ``gate:score`` (below the
    certified threshold), ``gate:not_certified`` (no threshold certifies the step's alpha, so it
    escalates everything) or ``gate:drift`` (live labels broke the bound). ``version`` is the
    calibration that decided, recorded in the trace's config digest.
    """

    accept: bool
    reason: str
    version: int
    score: float | None = None
    threshold: float | None = None


@runtime_checkable
class Gate(Protocol):
    """Decides whether to keep an attempt. ``None``: no calibrated opinion on this attempt (no
    calibration for the step, or not for this rung) -- the policy's log-probability thresholds apply."""

    def assess(self, step_key: str, contract_digest: str | None, attempt: Attempt) -> GateVerdict | None: ...


@dataclass(frozen=True)
class SkipVerdict:
    """A skip predictor's opinion of one request on one edge rung, before it runs: ``skip``
    when its predicted failure probability ``p_fail`` reaches the certified ``threshold``."""

    skip: bool
    p_fail: float
    threshold: float
    version: int


@runtime_checkable
class SkipPredictor(Protocol):
    """Predicts, from the request alone, that an edge rung will fail a step. ``None``: no
    certified predictor for this step and rung -- the rung is tried.

    ``contract``: the step's contract as a trace stores it (``{"kind", "spec"}``) or ``None``."""

    def predict_skip(
        self,
        step_key: str,
        contract: Mapping[str, Any] | None,
        messages: Sequence[Mapping[str, Any]],
        rung: str,
    ) -> SkipVerdict | None: ...
