"""A backend answered by a function: the one stand-in for a model, for tests and for users.

Like httpx's ``MockTransport``, it is public so that this package's tests, an application's
tests and an offline demo share one fake instead of each writing its own::

    def handler(call: Call) -> Generation | str:
        return '{"city": "Paris"}'

    ladder = Ladder(fleet, backends={"smollm2-135m": ScriptedBackend("smollm2-135m", handler)})

The handler gets the :class:`Call` (messages, contract, params) and returns a
:class:`Generation`, or just its text; raising :class:`BackendError` (or anything else) is
how it scripts a failure, and the ladder records it as a failed attempt as it would for a
real model. Every call is kept in :attr:`ScriptedBackend.calls`, in order, so a test can
assert what each rung was asked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelladder.backends.base import Generation, GenerationParams

if TYPE_CHECKING:
    from modelladder.contracts.base import Contract

__all__ = ["Call", "Handler", "ScriptedBackend"]


@dataclass(frozen=True)
class Call:
    """One request a :class:`ScriptedBackend` received."""

    messages: list[dict[str, Any]]
    contract: Contract | None
    params: GenerationParams

    @property
    def last_content(self) -> str:
        """The text of the last message: what most handlers answer."""
        return str(self.messages[-1].get("content") or "") if self.messages else ""


Handler = Callable[[Call], "Generation | str"]
Answer = Generation | str | BaseException


class ScriptedBackend:
    """A backend whose answers come from ``handler``. ``latency_s`` is the latency reported
    for answers given as plain text (a :class:`Generation` carries its own); ``delay_s``
    really sleeps before answering, for tests of timeouts and concurrency."""

    def __init__(self, name: str, handler: Handler, *, latency_s: float = 0.0, delay_s: float = 0.0):
        self.name = name
        self.calls: list[Call] = []
        self._handler = handler
        self._latency_s = latency_s
        self._delay_s = delay_s
        self._lock = threading.Lock()  # the gateway calls one backend from several threads

    @classmethod
    def replaying(cls, name: str, answers: Sequence[Answer], **kwargs: Any) -> ScriptedBackend:
        """Answer the n-th call with ``answers[n]`` (the last one once they run out); an
        exception in the list is raised instead of answered."""
        if not answers:
            raise ValueError("replaying needs at least one answer")
        script = list(answers)

        def handler(call: Call) -> Generation | str:
            with backend._lock:
                n = len(backend.calls)
            answer = script[min(n - 1, len(script) - 1)]
            if isinstance(answer, BaseException):
                raise answer
            return answer

        backend = cls(name, handler, **kwargs)
        return backend

    def generate(
        self, messages: list[dict[str, Any]], contract: Contract | None, params: GenerationParams
    ) -> Generation:
        call = Call(messages, contract, params)
        with self._lock:
            self.calls.append(call)
        if self._delay_s:
            time.sleep(self._delay_s)
        answer = self._handler(call)
        if isinstance(answer, Generation):
            return answer
        return Generation(text=answer, prompt_tokens=0, completion_tokens=0, latency_s=self._latency_s)
