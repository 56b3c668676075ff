"""Cool-downs: a rung whose endpoint keeps failing is left alone for a while, then tried again.

Why: a cloud endpoint that is down, overloaded or rate-limiting answers every request with
the same fault; calling it anyway costs each caller a timeout and the endpoint more load.
So the ladder counts each rung's *consecutive* upstream faults (:data:`UPSTREAM_FAULTS`: not a
contract failure, which says something about one prompt, not the endpoint) and, after
``after_failures`` of them, skips the rung for ``cooldown_s`` (doubled on each new trip that
follows without a success in between, up to ``max_cooldown_s``). When the time is up the rung
is eligible again; one success clears it, one more failure trips it again at once. A
``Retry-After`` the endpoint sent cools the rung for that long straight away: it told us when
to come back.

This is state shared by every run of a ladder (hence the lock) with no I/O of its own: the
clock is the ladder's, passed in, so the rules are tested with a fake one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Cooldown", "CooldownPolicy", "Cooldowns", "RungHealth", "UPSTREAM_FAULTS"]

#: Backend error codes that say the endpoint, not the request, is in trouble.
UPSTREAM_FAULTS = frozenset({"timeout", "unreachable", "rate_limited", "server_error", "bad_response"})


@dataclass(frozen=True)
class CooldownPolicy:
    """``after_failures``: consecutive upstream faults that cool a rung down (0: never, except
    for a ``Retry-After``); ``cooldown_s``: the first cool-down; ``max_cooldown_s``: the cap of
    the doubling."""

    after_failures: int = 5
    cooldown_s: float = 10.0
    max_cooldown_s: float = 120.0

    def __post_init__(self) -> None:
        if self.after_failures < 0:
            raise ValueError(f"after_failures must be >= 0, not {self.after_failures!r}")
        if self.cooldown_s <= 0 or self.max_cooldown_s < self.cooldown_s:
            raise ValueError("cooldown_s must be > 0 and max_cooldown_s >= cooldown_s")


@dataclass
class Cooldown:
    """One rung's record. ``until``: the clock time it is eligible again (0: not cooling)."""

    failures: int = 0  # consecutive upstream faults
    trips: int = 0  # cool-downs since the last success (the doubling's exponent)
    until: float = 0.0
    reason: str = ""  # the fault that started the current cool-down
    total: dict[str, int] = field(default_factory=dict)  # cool-downs started, by fault


@dataclass(frozen=True)
class RungHealth:
    """What ``healthz`` and ``/metrics`` show of a rung."""

    rung: str
    cooling_s: float  # seconds until it is eligible again (0: it is)
    failures: int
    reason: str
    cooldowns_total: dict[str, int]


class Cooldowns:
    """Every rung's cool-down, for one ladder. Thread-safe."""

    def __init__(self, policy: CooldownPolicy | None = None, clock: Callable[[], float] = time.perf_counter):
        self.policy = policy or CooldownPolicy()
        self.clock = clock
        self._lock = threading.Lock()
        self._rungs: dict[str, Cooldown] = {}

    def observe(self, rung: str, error: str | None, retry_after_s: float | None = None) -> None:
        """After an attempt on ``rung``: ``error`` is its backend error code (``None``: the
        endpoint answered, whatever the contract made of the answer)."""
        now = self.clock()
        with self._lock:
            c = self._rungs.setdefault(rung, Cooldown())
            if error not in UPSTREAM_FAULTS:
                if error is None:  # it answered: the endpoint is back
                    c.failures, c.trips, c.until, c.reason = 0, 0, 0.0, ""
                return
            c.failures += 1
            until = now + retry_after_s if retry_after_s is not None and retry_after_s > 0 else 0.0
            p = self.policy
            if p.after_failures and c.failures >= p.after_failures:
                until = max(until, now + min(p.cooldown_s * 2**c.trips, p.max_cooldown_s))
                c.trips += 1
            if until > c.until and until > now:
                if c.until <= now:  # a new cool-down, not the extension of one
                    c.total[error] = c.total.get(error, 0) + 1
                c.until, c.reason = until, error

    def cooling(self) -> dict[str, float]:
        """The rungs cooling now, with the seconds each has left."""
        now = self.clock()
        with self._lock:
            return {name: c.until - now for name, c in self._rungs.items() if c.until > now}

    def health(self) -> list[RungHealth]:
        now = self.clock()
        with self._lock:
            return [
                RungHealth(name, max(c.until - now, 0.0), c.failures, c.reason if c.until > now else "",
                           dict(c.total))
                for name, c in sorted(self._rungs.items())
            ]  # fmt: skip
