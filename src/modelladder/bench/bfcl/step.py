"""The step a BFCL item runs as: shared by the benchmark and by distillation, which rebuilds
the step of a recorded bench run so the student is trained on the very contract and prompt
the bench used.

Every category uses ``ToolCalls(item.tools, parallel=item.parallel, allow_no_call=True)``:
declining is allowed everywhere because whether the tools at hand can serve a request is
exactly what the irrelevance categories test (see :mod:`modelladder.bench.runner`).
"""

from __future__ import annotations

from modelladder.bench.bfcl.data import BfclItem
from modelladder.contracts import ToolCalls
from modelladder.ladder import Step

__all__ = ["STEP_NAME", "make_step"]

STEP_NAME = "bfcl"


def make_step(item: BfclItem) -> Step:
    """The step for an item. Parallel items get twice the token budget: several calls in one answer."""
    contract = ToolCalls(item.tools, parallel=item.parallel, allow_no_call=True)
    return Step(STEP_NAME, contract, max_tokens=512 if item.parallel else 256)
