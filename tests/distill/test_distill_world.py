"""The scripted distillation world itself behaves as the other distill tests assume."""

from __future__ import annotations

from modelladder.traces import TraceStore
from tests.support.distill import questions, record, teacher_ids


def test_scripted_world_escalates_about_half() -> None:
    store = TraceStore(":memory:")
    results = record(store, questions(40))
    n = len(teacher_ids(results))
    assert 10 <= n <= 30
    assert all(r.outcome == "resolved" for r in results)
