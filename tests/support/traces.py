"""Runs to record, shared by the trace-store tests (tests/traces, tests/learning), and raw
access to a store's database (SQLite or PostgreSQL) for checking what is, or is not, in it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from modelladder.contracts.base import Verdict
from modelladder.ladder.outcome import Attempt, Confidence, Resolved, Unresolved
from modelladder.traces.connect import open_engine
from modelladder.traces.engine import Engine

__all__ = ["T0", "City", "count", "make_resolved", "make_unresolved", "raw", "table_exists"]

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


class City(BaseModel):
    city: str
    population: int | None = None


def make_resolved(
    run_id: str = "run-res", step: str = "extract", tags: dict[str, str] | None = None
) -> Resolved:
    failed = Attempt(
        index=0,
        rung="tiny",
        placement="local",
        text='{"city": 4}',
        verdict=Verdict.failed("schema_violation", "city: 4 is not a string", {"city": 4}),
        confidence=Confidence(-0.25, -1.5, 3),
        prompt_tokens=50,
        completion_tokens=6,
        cached_prompt_tokens=10,
        latency_s=0.1,
        finish_reason="stop",
        escalation_reason="schema_violation",
    )
    good = Attempt(
        index=1,
        rung="small",
        placement="remote",
        text='{"city": "Paris", "population": 2100000}',
        verdict=Verdict.passed(City(city="Paris", population=2_100_000)),
        confidence=Confidence(-0.05, -0.4, 4),
        prompt_tokens=60,
        completion_tokens=12,
        latency_s=0.4,
        cost_usd=0.0012,
        finish_reason="stop",
        accepted=True,
    )
    return Resolved(
        run_id=run_id,
        step=step,
        contract_digest="c0ffee",
        messages=[{"role": "system", "content": "Extract."}, {"role": "user", "content": "I live in Paris."}],
        attempts=[failed, good],
        latency_s=0.55,
        tags=tags if tags is not None else {"env": "test"},
    )


def make_unresolved(run_id: str = "run-unres", step: str = "extract") -> Unresolved:
    crashed = Attempt(
        index=0, rung="tiny", placement="local", error="timeout", error_detail="no answer in 5s",
        latency_s=5.0, escalation_reason="backend_error:timeout",
    )  # fmt: skip
    wrong = Attempt(
        index=1,
        rung="small",
        placement="local",
        text="Paris, I think",
        verdict=Verdict.failed("parse_error", "not JSON"),
        prompt_tokens=40,
        completion_tokens=5,
        escalation_reason="parse_error",
    )
    return Unresolved(
        run_id=run_id,
        step=step,
        contract_digest=None,
        messages=[{"role": "user", "content": "Where do I live?"}],
        attempts=[crashed, wrong],
        latency_s=5.2,
        reason="ladder_exhausted",
    )


@contextmanager
def raw(location: Path | str) -> Iterator[Engine]:
    """The store's database without the store: no migration, nothing checked (``?`` placeholders)."""
    engine = open_engine(location, create=True, timeout=5)
    try:
        yield engine
    finally:
        engine.close()


def count(location: Path | str, table: str) -> int:
    with raw(location) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def table_exists(db: Engine, name: str) -> bool:
    try:
        db.execute(f"SELECT 1 FROM {name} LIMIT 0").fetchall()
    except db.errors:
        return False
    return True
