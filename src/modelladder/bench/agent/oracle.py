"""The ``reference`` oracle for agent steps: it answers with the gold call the harness names.

Same rung, label, price and latency as the single-turn benchmark's oracle
(:class:`~modelladder.bench.bfcl.reference.ReferenceBackend`, whose token estimate and
``generate`` are reused); only the answer lookup differs. A multi-turn step's right answer
depends on where the harness is (gold call ``k`` in the step suite; in a closed loop, every gold
call of the turn not made yet, in one hop), so the harness sets it for the duration of one step with
:meth:`AgentReference.answering` instead of registering items. It is not a model, and every
figure that includes it says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from modelladder.backends.base import BackendError
from modelladder.bench.agent.history import END_OF_TURN
from modelladder.bench.bfcl.reference import ReferenceBackend
from modelladder.contracts.tools import render_calls

if TYPE_CHECKING:
    from modelladder.contracts.base import Contract

__all__ = ["AgentReference", "answer_text"]


def answer_text(calls: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """The canonical tool-call text for gold calls ``(name, kwargs)``; the decline for none."""
    if not calls:
        return END_OF_TURN
    return render_calls([{"name": n, "arguments": a} for n, a in calls])


class AgentReference(ReferenceBackend):
    """The oracle; outside :meth:`answering` it refuses (a failed attempt, never a guess)."""

    _text: str | None = None

    @contextmanager
    def answering(self, text: str | None) -> Iterator[None]:
        previous, self._text = self._text, text
        try:
            yield
        finally:
            self._text = previous

    def _answer(self, messages: list[dict[str, Any]], contract: Contract | None) -> str:
        if self._text is None:
            raise BackendError("bad_response", f"{self.name}: no gold answer was set for this step")
        return self._text
