"""What the gate model sees of an attempt: one flat, named feature row.

The same function reads a live :class:`~modelladder.ladder.outcome.Attempt`, a stored
:class:`~modelladder.traces.records.AttemptRecord` and a ``bench bfcl`` results line, so the
gate is fitted on exactly the features it is later applied to.

Signals (issue 15, item 5): value-token log-probability mean, minimum and low quantiles; the
log-probability of the first free choice, and of the call/decline choice (the backends record the chosen token's probability,
not the runner-up's, so this stands in for the margin there: with renormalised constrained
decoding the margin is at least ``2p - 1``); output length; whether the answer declined (no
call, no value token); the tool called; the rung.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Encoder",
    "MISSING_LOGPROB",
    "NUMERIC",
    "NUMERIC_V1",
    "Row",
    "SIGNALS",
    "from_attempt",
    "from_fields",
    "from_stored",
]

NUMERIC = (
    "mean_logprob", "min_logprob", "p10_logprob", "p25_logprob", "first_logprob",
    "log_value_tokens", "log_completion_tokens", "no_value_tokens", "decision_logprob", "no_decision",
    "turn_start", "log_tool_results", "decline_at_turn_start",
)  # fmt: skip
#: The numeric features of gate models fitted before the decision signal was recorded
#: (their stored encoders name none, so they are read with these).
NUMERIC_V1 = NUMERIC[:8]
# single signals an isotonic fit may use (higher = more confident)
SIGNALS = ("mean_logprob", "min_logprob", "p10_logprob", "p25_logprob", "first_logprob", "decision_logprob")
MISSING_LOGPROB = 0.0  # no value token: the indicator ``no_value_tokens`` carries the information


@dataclass(frozen=True)
class Row:
    """One attempt's features: numeric signals plus the categorical tool and rung."""

    numeric: dict[str, float]
    tool: str
    rung: str


def _tool(value: Any) -> str:
    if isinstance(value, list):
        if not value:
            return "<decline>"
        names = sorted({str(c.get("name")) for c in value if isinstance(c, Mapping)})
        return "+".join(names) or "<none>"
    return "<value>"


def from_fields(
    *,
    mean: float | None,
    min_: float | None,
    n_value: int | None,
    completion_tokens: int | None,
    signals: Mapping[str, float] | None,
    value: Any,
    rung: str,
) -> Row:
    sig = dict(signals or {})
    no_value = not n_value
    lp = {
        "mean_logprob": mean, "min_logprob": min_,
        "p10_logprob": sig.get("p10_logprob", min_), "p25_logprob": sig.get("p25_logprob", min_),
        "first_logprob": sig.get("first_logprob", mean),
    }  # fmt: skip
    numeric = {k: (MISSING_LOGPROB if v is None or no_value else float(v)) for k, v in lp.items()}
    numeric["log_value_tokens"] = math.log1p(n_value or 0)
    numeric["log_completion_tokens"] = math.log1p(completion_tokens or 0)
    numeric["no_value_tokens"] = float(no_value)
    # the call/decline choice: for a decline the only signal there is (absent on old records)
    decision = sig.get("decision_logprob")
    numeric["decision_logprob"] = MISSING_LOGPROB if decision is None else float(decision)
    numeric["no_decision"] = float(decision is None)
    # where in the turn (absent on old records and remote rungs: the neutral 0.5 and 0)
    numeric["turn_start"] = float(sig.get("turn_start", 0.5))
    numeric["log_tool_results"] = math.log1p(float(sig.get("tool_results", 0.0)))
    # a decline right after the user's message, as its own feature: a linear gate cannot
    # form the product of "declined" and "turn start" by itself
    numeric["decline_at_turn_start"] = float(_tool(value) == "<decline>" and sig.get("turn_start") == 1.0)
    return Row(numeric, _tool(value), rung)


def from_attempt(a: Any) -> Row:
    """A live Attempt or a stored AttemptRecord (both carry ``confidence`` and ``value``)."""
    c = a.confidence
    return from_fields(
        mean=c.mean_logprob if c else None, min_=c.min_logprob if c else None,
        n_value=c.n_value_tokens if c else None, completion_tokens=a.completion_tokens,
        signals=c.signals() if c else None, value=a.value, rung=a.rung,
    )  # fmt: skip


def from_stored(d: Mapping[str, Any]) -> Row:
    """A per-rung attempt of a ``bench bfcl`` results line (``bench.results.attempt_record``)."""
    return from_fields(
        mean=d.get("mean_logprob"), min_=d.get("min_logprob"), n_value=d.get("n_value_tokens"),
        completion_tokens=d.get("completion_tokens"), signals=d.get("signals"), value=d.get("calls"),
        rung=str(d.get("rung")),
    )  # fmt: skip


@dataclass(frozen=True)
class Encoder:
    """Rows to a numeric matrix: the numeric signals, then one-hot tools and rungs seen in fitting
    (an unseen tool or rung gets all zeros, i.e. the average case)."""

    tools: tuple[str, ...]
    rungs: tuple[str, ...]
    numeric: tuple[str, ...] = NUMERIC

    @classmethod
    def fit(cls, rows: Sequence[Row], max_tools: int = 20, numeric: tuple[str, ...] = NUMERIC) -> Encoder:
        counts: dict[str, int] = {}
        for r in rows:
            counts[r.tool] = counts.get(r.tool, 0) + 1
        tools = tuple(sorted(counts, key=lambda t: (-counts[t], t))[:max_tools])
        return cls(tools, tuple(sorted({r.rung for r in rows})), numeric)

    @property
    def names(self) -> list[str]:
        return [*self.numeric, *(f"tool={t}" for t in self.tools), *(f"rung={r}" for r in self.rungs)]

    def vector(self, row: Row) -> list[float]:
        return [
            *(row.numeric[k] for k in self.numeric),
            *(float(row.tool == t) for t in self.tools),
            *(float(row.rung == r) for r in self.rungs),
        ]

    def as_dict(self) -> dict[str, Any]:
        return {"tools": list(self.tools), "rungs": list(self.rungs), "numeric": list(self.numeric)}
