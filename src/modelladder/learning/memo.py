"""The answer memo: a rung that answers an input seen before with its verified answer.

In a team's own agent the same step input recurs (the same question, the same tool results
so far); when it has a verified answer in the example index, asking a model again costs
time and risks a different, wrong answer. The memo is a rung of its own (``backend =
"memo"`` in the fleet file, ``params = 1`` so it comes first; zero cost), so it has its
own line in every report and its answers are validated against today's contract by the
ladder like any rung's. A miss is a backend error (``memo_miss``) and the ladder moves on.

It is off for steps whose tools have side effects (``side_effects = true`` in the step's
policy) or where ``memo = false``: the policy then never offers the rung
(:func:`modelladder.ladder.policy.eligible_rungs`). "Identical" means the normalised
conversation (:func:`~modelladder.learning.example_query.input_digest`) and the same step.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelladder.backends.base import BackendError, Generation, GenerationParams
from modelladder.learning.example_query import input_digest

if TYPE_CHECKING:
    from modelladder.contracts.base import Contract
    from modelladder.fleet_types import Rung
    from modelladder.learning.example_index import ExampleIndex

__all__ = ["MemoBackend", "open_memo_rung"]


class MemoBackend:
    """Answers from ``index.memo(step_key, digest)``; a miss raises ``memo_miss``."""

    name = "memo"

    def __init__(self, index: ExampleIndex) -> None:
        self.index = index
        self.hits = self.misses = 0

    def generate(self, messages: list[dict[str, Any]], contract: Contract | None,
                 params: GenerationParams) -> Generation:  # fmt: skip
        t0 = time.perf_counter()
        if params.step_key is None:
            raise BackendError("memo_miss", "the memo needs the step key (the ladder passes it)")
        ex = self.index.memo(params.step_key, input_digest(messages))
        if ex is None:
            self.misses += 1
            raise BackendError("memo_miss", "no verified answer for this exact input")
        self.hits += 1
        return Generation(text=ex.text, prompt_tokens=0, completion_tokens=0, latency_s=time.perf_counter() - t0,
                          raw={"memo": ex.id})  # fmt: skip


def open_memo_rung(rung: Rung) -> MemoBackend:
    """The registry's factory: ``path`` names the example index file (default: the index in
    the modelladder home)."""
    from modelladder.learning.example_index import ExampleIndex

    return MemoBackend(ExampleIndex(Path(rung.path).expanduser() if rung.path else None))
