"""Bounded per-rung queues: a local model generates one answer at a time, so requests wait
their turn in a queue of known length instead of piling up threads.

Why a queue per rung (per loaded model, for local rungs): the gateway's capacity is the
models', not the event loop's. A request enters the queue of the rung its ladder starts
on; when that queue is full it is refused at once with 429 and a ``Retry-After`` computed
from how long the rung takes, so a client backs off instead of hanging. Waiting happens on
the event loop (no thread is held), which is what lets a client that disconnects while
queued simply leave: its work was never started. Once started, a run holds its slot until
the ladder finishes, escalations included (later rungs serialise on their own backends).

Prefix-aware, with bounded unfairness: each waiter may carry a conversation key (the
episode id). When a slot frees and several wait, a waiter of the conversation that just ran
goes first (its prompt is still in the model's working sequence, so it skips even the cache's
save and restore), but no waiter is passed over more than ``max_bypass`` times: FIFO order
with a bounded exception, so no conversation starves.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from modelladder.fleet import Rung

__all__ = ["QueueFull", "QueueTimeout", "Queues", "RungQueue", "acquire"]


class QueueFull(Exception):
    """The queue holds ``max_waiting`` requests already."""

    def __init__(self, queue: RungQueue):
        super().__init__(
            f"queue full: {queue.waiting} requests already wait for {queue.name!r} "
            f"(the limit is {queue.max_waiting} waiting per queue: `modelladder serve --max-queue`)"
        )
        self.retry_after_s = queue.retry_after_s()


class QueueTimeout(Exception):
    """The request waited ``timeout_s`` without reaching the model."""

    def __init__(self, queue: RungQueue, waited_s: float):
        super().__init__(
            f"wait-for-slot timeout: no free slot on {queue.name!r} within {waited_s:.1f}s "
            f"({queue.waiting} others waiting; the limit is queue_timeout_s, or the step's latency budget "
            "when smaller; `modelladder serve --queue-timeout`)"
        )
        self.retry_after_s = queue.retry_after_s()


@dataclass
class _Waiter:
    fut: asyncio.Future[None]
    key: str | None
    bypassed: int = 0  # how often a later waiter went first


@dataclass
class RungQueue:
    """``concurrency`` requests run, up to ``max_waiting`` more wait in FIFO order, except
    that the conversation that ran last may go first (at most ``max_bypass`` times ahead of
    any one waiter)."""

    name: str
    concurrency: int
    max_waiting: int
    running: int = 0
    service_s: float = 1.0  # moving average of how long one run holds a slot
    max_bypass: int = 2
    last_key: str | None = None  # the conversation the most recent slot went to
    preferred: int = 0  # slots handed out of FIFO order to the resident conversation
    _waiters: deque[_Waiter] = field(default_factory=deque)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def retry_after_s(self) -> int:
        """Seconds until the queue has likely drained enough to take one more request."""
        return max(1, math.ceil((self.waiting + 1) * self.service_s / max(1, self.concurrency)))

    def try_acquire(self, key: str | None = None) -> bool:
        """Take a slot now if one is free and nobody is ahead; never waits."""
        if self.running < self.concurrency and not self._waiters:
            self.running += 1
            self.last_key = key
            return True
        return False

    def enqueue(self, key: str | None = None) -> asyncio.Future[None]:
        """Join the queue; the future resolves when a slot is handed over. Raises QueueFull."""
        if self.waiting >= self.max_waiting:
            raise QueueFull(self)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(_Waiter(fut, key))
        return fut

    def abandon(self, fut: asyncio.Future[None]) -> None:
        """A waiter gave up (timeout, disconnect). If it was handed a slot meanwhile, pass it on."""
        if fut.done() and not fut.cancelled():
            self.release()
            return
        fut.cancel()
        for w in list(self._waiters):
            if w.fut is fut:
                self._waiters.remove(w)

    def release(self, held_s: float | None = None) -> None:
        """Give the slot to the next waiter (slot count unchanged) or free it."""
        if held_s is not None:
            self.service_s = 0.8 * self.service_s + 0.2 * held_s
        while self._waiters and self._waiters[0].fut.done():
            self._waiters.popleft()  # abandoned meanwhile
        if not self._waiters:
            self.running -= 1
            return
        chosen = self._next_waiter()
        self._waiters.remove(chosen)
        self.last_key = chosen.key
        chosen.fut.set_result(None)

    def _next_waiter(self) -> _Waiter:
        """The head of the queue, or a later waiter of the conversation that ran last when
        nobody it would pass has been passed ``max_bypass`` times already."""
        live = [w for w in self._waiters if not w.fut.done()]
        if self.last_key is not None:
            for i, w in enumerate(live):
                if any(ahead.bypassed >= self.max_bypass for ahead in live[:i]):
                    break
                if w.key == self.last_key:
                    for ahead in live[:i]:
                        ahead.bypassed += 1
                    self.preferred += int(i > 0)
                    return w
        return live[0]


class Queues:
    """The queues of one gateway, keyed so that rungs sharing a loaded model share a queue."""

    def __init__(self, rungs: list[Rung], *, max_waiting: int, remote_concurrency: int):
        self._by_rung: dict[str, RungQueue] = {}
        by_key: dict[str, RungQueue] = {}
        for rung in rungs:
            key = f"{rung.backend}:{rung.path}" if rung.backend == "llamacpp" else rung.name
            if key not in by_key:
                concurrency = 1 if rung.backend == "llamacpp" else remote_concurrency
                by_key[key] = RungQueue(rung.name, concurrency, max_waiting)
            self._by_rung[rung.name] = by_key[key]
        self.all = list(by_key.values())

    def for_rung(self, rung: Rung) -> RungQueue:
        return self._by_rung[rung.name]


async def acquire(
    queue: RungQueue,
    timeout_s: float | None,
    disconnected: asyncio.Future[Any] | None,
    key: str | None = None,
) -> bool:
    """Wait for a slot (``key``: the conversation, for the queue's preference). ``False``:
    the client went away first (nothing was started). Raises :class:`QueueFull` or
    :class:`QueueTimeout`."""
    if queue.try_acquire(key):
        return True
    fut = queue.enqueue(key)
    t0 = time.perf_counter()
    waits: set[asyncio.Future[object]] = {fut}  # type: ignore[arg-type]
    if disconnected is not None:
        waits.add(disconnected)
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        queue.abandon(fut)
        raise
    if fut in done and not fut.cancelled():
        return True
    queue.abandon(fut)
    if disconnected is not None and disconnected in done:
        return False
    raise QueueTimeout(queue, time.perf_counter() - t0)
