"""Prometheus metrics in the text exposition format (version 0.0.4), written by hand.

Why not ``prometheus_client``: the handful of counters and histograms needed here are a
few dozen lines, and the gateway's dependency list stays what it is. Label values come
from fixed sets (route templates, rung names, escalation reason codes) so cardinality is
bounded. Updates happen on the event loop and in ladder worker threads, hence the lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from modelladder.ladder.cooldown import RungHealth
from modelladder.ladder.outcome import SKIPPED, Attempt

__all__ = ["Counter", "Gauge", "Histogram", "LATENCY_BUCKETS", "Metrics", "ReadCounter"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: tuple[str, ...], lock: threading.Lock):
        self.name, self.help, self.labelnames, self._lock = name, help, labels, lock

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def lines(self) -> list[str]:
        raise NotImplementedError  # each kind of metric renders its own samples


class Counter(_Metric):
    kind = "counter"

    def __init__(self, *a: object, **kw: object):
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, by: float = 1.0) -> None:
        with self._lock:
            self.values[labels] = self.values.get(labels, 0.0) + by

    def lines(self) -> list[str]:
        return [f"{self.name}{_labels(self.labelnames, k)} {_num(v)}" for k, v in sorted(self.values.items())]


class Gauge(_Metric):
    """Read at scrape time from a callback: queue depths are state, not events."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: tuple[str, ...], lock: threading.Lock,
                 read: Callable[[], Iterable[tuple[tuple[str, ...], float]]]):  # fmt: skip
        super().__init__(name, help, labels, lock)
        self.read = read

    def lines(self) -> list[str]:
        return [f"{self.name}{_labels(self.labelnames, k)} {_num(v)}" for k, v in self.read()]


class ReadCounter(Gauge):
    """A counter kept elsewhere (a backend's prompt cache) and read at scrape time."""

    kind = "counter"


#: Prompt-cache counters per resident model: (metric suffix, CacheStats field, help).
_CACHE_COUNTERS = (
    ("hits_total", "hits", "Prompts that restored a saved conversation state, per model."),
    ("misses_total", "misses", "Prompts that found no saved state better than the resident one, per model."),
    (
        "restored_tokens_total",
        "restored_tokens",
        "Prompt tokens restored from the cache instead of evaluated.",
    ),
    ("evictions_total", "evictions", "Saved states dropped to stay under the cache budget."),
    ("restore_failures_total", "restore_failures", "Restores llama.cpp refused (the prompt was evaluated)."),
)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: tuple[str, ...], lock: threading.Lock,
                 buckets: tuple[float, ...] = LATENCY_BUCKETS):  # fmt: skip
        super().__init__(name, help, labels, lock)
        self.buckets = buckets
        self.values: dict[tuple[str, ...], list[float]] = {}  # per bucket counts, then sum, count

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            row = self.values.setdefault(labels, [0.0] * (len(self.buckets) + 2))
            for i, b in enumerate(self.buckets):
                if value <= b:
                    row[i] += 1
            row[-2] += value
            row[-1] += 1

    def lines(self) -> list[str]:
        out = []
        for k, row in sorted(self.values.items()):
            for i, b in enumerate(self.buckets):
                le = 'le="' + _num(b) + '"'
                out.append(f"{self.name}_bucket{_labels(self.labelnames, k, le)} {_num(row[i])}")
            inf = 'le="+Inf"'
            out.append(f"{self.name}_bucket{_labels(self.labelnames, k, inf)} {_num(row[-1])}")
            out.append(f"{self.name}_sum{_labels(self.labelnames, k)} {_num(row[-2])}")
            out.append(f"{self.name}_count{_labels(self.labelnames, k)} {_num(row[-1])}")
        return out


#: Per-step gate gauges: (metric suffix, field of ``StoreGate.status()``, help).
_GATE_GAUGES = (
    (
        "certified",
        "certified",
        "1 when the step's calibrated gate certifies its alpha, 0 when it escalates all.",
    ),
    ("alpha", "alpha", "The accepted-wrong rate the step's gate is calibrated to (max_accepted_wrong)."),
    ("calibration_version", "version", "The gate calibration in force per step."),
    ("live_labels", "live_labels", "Labels given since the calibration on answers it accepted."),
    (
        "live_accepted_wrong",
        "live_accepted_wrong",
        "Share of those labels that say wrong (drift is tested on it).",
    ),
    ("drift", "drift", "1 when live labels broke the bound and the step escalates all."),
)


def _gauge_rows(
    rows: Callable[[], dict[str, dict[str, object]]], field: str
) -> list[tuple[tuple[str, ...], float]]:
    """One gauge's samples from a per-step status; a status that cannot be read (the store went
    away) shows no samples rather than breaking the scrape."""
    try:
        status = rows()
    except Exception as exc:
        logging.getLogger("modelladder.gateway").warning("metrics: cannot read the gate status (%s)", exc)
        return []
    out: list[tuple[tuple[str, ...], float]] = []
    for step, st in status.items():
        v = st.get(field)
        if isinstance(v, bool | int | float):
            out.append(((step,), float(v)))
    return out


class Metrics:
    """The gateway's metrics. ``queues`` is read at scrape time for the queue gauges."""

    def __init__(
        self,
        queues: Callable[[], Iterable[tuple[str, int, int]]],
        caches: Callable[[], Iterable[tuple[str, dict[str, int]]]] = lambda: (),
        rungs: Callable[[], Iterable[RungHealth]] = lambda: (),
        traces_lost: Callable[[], dict[str, int]] = dict,
        gates: Callable[[], dict[str, dict[str, object]]] = dict,
        skips: Callable[[], dict[str, dict[str, object]]] = dict,
        shadow_rates: Callable[[], dict[str, float]] = dict,
    ):
        """``caches``: read at scrape time, ``(model file name, CacheStats.as_dict())`` per
        resident model; ``rungs``: each rung's cool-down state; ``traces_lost``: traces the
        store refused, by reason; ``gates`` / ``skips``: ``StoreGate.status()`` /
        ``skip_status()`` (per step key); ``shadow_rates``: the policy's ``shadow_rate`` per
        configured step (all read at scrape time)."""
        lock = threading.Lock()
        self.requests = Counter("modelladder_http_requests_total", "HTTP requests by route and status.",
                                ("route", "status"), lock)  # fmt: skip
        self.request_latency = Histogram(
            "modelladder_request_duration_seconds",
            "Chat completion latency end to end (queue wait included), by the rung that answered.",
            ("rung",), lock,
        )  # fmt: skip
        self.attempt_latency = Histogram("modelladder_attempt_duration_seconds", "Latency of one attempt, by rung.",
                                         ("rung",), lock)  # fmt: skip
        self.attempts = Counter("modelladder_attempts_total", "Attempts by rung and outcome (accepted/escalated/skipped).",
                                ("rung", "outcome"), lock)  # fmt: skip
        self.escalations = Counter(
            "modelladder_escalations_total", "Escalations by reason.", ("reason",), lock
        )
        self.contract_failures = Counter(
            "modelladder_contract_failures_total", "Outputs that failed the contract, by rung and reason.",
            ("rung", "reason"), lock,
        )  # fmt: skip
        self.runs = Counter(
            "modelladder_runs_total", "Ladder runs by step and outcome.", ("step", "outcome"), lock
        )
        self.rejections = Counter(
            "modelladder_queue_rejections_total", "Requests refused with 429, by queue and why (full/timeout).",
            ("queue", "reason"), lock,
        )  # fmt: skip
        self.cancelled = Counter(
            "modelladder_queue_cancelled_total", "Queued requests dropped because the client disconnected.",
            ("queue",), lock,
        )  # fmt: skip
        self.depth = Gauge("modelladder_queue_depth", "Requests waiting, per queue.", ("queue",), lock,
                           lambda: [((n,), float(w)) for n, w, _ in queues()])  # fmt: skip
        self.running = Gauge("modelladder_queue_running", "Requests running, per queue.", ("queue",), lock,
                             lambda: [((n,), float(r)) for n, _, r in queues()])  # fmt: skip
        cooling = Gauge("modelladder_rung_cooldown_seconds",
                        "Seconds until a cooled-down rung is tried again (0: it is eligible).", ("rung",), lock,
                        lambda: [((h.rung,), h.cooling_s) for h in rungs()])  # fmt: skip
        cooldowns = ReadCounter(
            "modelladder_rung_cooldowns_total", "Cool-downs started, by rung and the fault that started them.",
            ("rung", "reason"), lock,
            lambda: [((h.rung, r), float(n)) for h in rungs() for r, n in sorted(h.cooldowns_total.items())],
        )  # fmt: skip
        lost = ReadCounter(
            "modelladder_traces_lost_total", "Answered runs the trace store refused to record, by reason.",
            ("reason",), lock, lambda: [((r,), float(n)) for r, n in sorted(traces_lost().items())],
        )  # fmt: skip
        self._all: list[_Metric] = [
            self.requests, self.request_latency, self.attempt_latency, self.attempts, self.escalations,
            self.contract_failures, self.runs, self.rejections, self.cancelled, self.depth, self.running,
            cooling, cooldowns, lost,
        ]  # fmt: skip

        def per_model(key: str) -> Callable[[], list[tuple[tuple[str, ...], float]]]:
            return lambda: [((m,), float(stats[key])) for m, stats in caches()]

        for suffix, key, help in _CACHE_COUNTERS:
            self._all.append(ReadCounter(f"modelladder_prompt_cache_{suffix}", help, ("model",), lock,
                                         per_model(key)))  # fmt: skip
        self._all.append(Gauge("modelladder_prompt_cache_bytes", "Host RAM held by saved prompt states, per model.",
                               ("model",), lock, per_model("bytes")))  # fmt: skip

        def read(rows: Callable[[], dict[str, dict[str, object]]], field: str) -> Callable[[], list[tuple[tuple[str, ...], float]]]:  # fmt: skip
            return lambda: _gauge_rows(rows, field)

        for suffix, key, help in _GATE_GAUGES:
            self._all.append(Gauge(f"modelladder_gate_{suffix}", help, ("step",), lock, read(gates, key)))
        self._all.append(Gauge("modelladder_skip_certified", "1 when the step's ex-ante skip predictor is certified.",
                               ("step",), lock, read(skips, "certified")))  # fmt: skip
        self._all.append(Gauge("modelladder_skip_max_lost", "The share of skipped steps the edge may have had right.",
                               ("step",), lock, read(skips, "max_lost")))  # fmt: skip
        self._all.append(Gauge("modelladder_shadow_rate", "Share of accepted edge answers checked by the next rung.",
                               ("step",), lock, lambda: [((k,), float(v)) for k, v in sorted(shadow_rates().items())]))  # fmt: skip

    def on_attempt(self, attempt: Attempt) -> None:
        """Ladder hook: called in the worker thread after each attempt is judged."""
        if attempt.error == SKIPPED:  # passed over before it ran: no latency to observe
            self.attempts.inc(attempt.rung, "skipped")
            self.escalations.inc(attempt.escalation_reason or SKIPPED)
            return
        self.attempt_latency.observe(attempt.latency_s, attempt.rung)
        self.attempts.inc(attempt.rung, "accepted" if attempt.accepted else "escalated")
        if attempt.escalation_reason:
            self.escalations.inc(attempt.escalation_reason)
        if attempt.verdict is not None and not attempt.verdict.ok:
            self.contract_failures.inc(attempt.rung, attempt.verdict.reason or "unknown")

    def render(self) -> str:
        lines: list[str] = []
        for m in self._all:
            lines += m.header() + m.lines()
        return "\n".join(lines) + "\n"
