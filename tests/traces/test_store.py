"""The trace store's API (modelladder.traces), run on both stores: every test here takes
``trace_location`` (tests/conftest.py), once a SQLite file and once a PostgreSQL database."""

from __future__ import annotations

import io
import json
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelladder.contracts.base import Verdict
from modelladder.ladder.outcome import Attempt, Confidence, Resolved, StepResult
from modelladder.traces import RunRecord, RunSummary, TraceStore, TraceStoreError, UnknownRunError
from tests.support.traces import T0, City, count, make_resolved, make_unresolved


@pytest.fixture
def store(trace_location: Path | str):
    with TraceStore(trace_location) as s:
        yield s


def test_closed_store(trace_location: Path | str) -> None:
    s = TraceStore(trace_location)
    s.close()
    s.close()  # idempotent
    with pytest.raises(TraceStoreError, match="closed"):
        s.list_runs()
    with pytest.raises(TraceStoreError, match="closed"):
        s.record(make_resolved())


# -- record / get --------------------------------------------------------------------------------


def test_round_trip_resolved(store: TraceStore) -> None:
    result = make_resolved()
    store.record(result, created_at=T0)
    run = store.get_run(result.run_id)
    assert isinstance(run, RunRecord) and isinstance(run, RunSummary)
    assert run.run_id == "run-res" and run.step == "extract" and run.contract_digest == "c0ffee"
    assert run.created_at == T0
    assert run.outcome == "resolved" and run.resolved and run.reason is None
    assert (run.rung, run.placement) == ("small", "remote")
    assert run.messages == result.messages
    assert run.text == result.text
    assert run.value == {"city": "Paris", "population": 2100000}  # Pydantic -> model_dump(mode="json")
    assert run.latency_s == 0.55 and run.cost_usd == 0.0012  # exact: 8-byte floats on both stores
    assert (run.prompt_tokens, run.completion_tokens) == (110, 18)
    assert run.tags == {"env": "test"} and run.n_attempts == 2
    assert run.feedback_success is None and run.feedback_note is None and run.feedback_at is None

    first, second = run.attempts
    assert first.index == 0 and first.rung == "tiny" and first.placement == "local"
    assert first.verdict == Verdict.failed("schema_violation", "city: 4 is not a string", {"city": 4})
    assert first.confidence == Confidence(-0.25, -1.5, 3)
    assert (first.prompt_tokens, first.completion_tokens, first.cached_prompt_tokens) == (50, 6, 10)
    assert first.escalation_reason == "schema_violation" and not first.accepted
    assert first.finish_reason == "stop" and first.error is None
    assert second.accepted and second.verdict_ok is True and second.verdict_reason is None
    assert second.value == {"city": "Paris", "population": 2100000}
    assert run.accepted == second


def test_round_trip_unresolved(store: TraceStore) -> None:
    result = make_unresolved()
    store.record(result)
    run = store.get_run(result.run_id)
    assert run.outcome == "unresolved" and not run.resolved and run.reason == "ladder_exhausted"
    assert run.rung is None and run.placement is None and run.text is None and run.value is None
    assert run.contract_digest is None and run.tags == {} and run.accepted is None
    crashed, wrong = run.attempts
    assert crashed.verdict is None and crashed.verdict_ok is None and crashed.confidence is None
    assert crashed.error == "timeout" and crashed.error_detail == "no answer in 5s" and crashed.text == ""
    assert crashed.escalation_reason == "backend_error:timeout"
    assert wrong.verdict == Verdict.failed("parse_error", "not JSON")
    assert abs(run.created_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_odd_values_are_serialised(store: TraceStore) -> None:
    result = make_resolved("odd")
    result.attempts[-1].verdict = Verdict.passed({"when": T0, "cities": [City(city="Rome")], "n": None})
    result.messages.append({"role": "user", "content": "ünïcode ✓, a NUL \x00 and 100% ?"})
    store.record(result)
    run = store.get_run("odd")
    assert run.value == {"when": str(T0), "cities": [{"city": "Rome", "population": None}], "n": None}
    assert run.messages[-1]["content"] == "ünïcode ✓, a NUL \x00 and 100% ?"


def test_bad_records_are_refused(store: TraceStore) -> None:
    store.record(make_resolved())
    with pytest.raises(TraceStoreError, match="already recorded"):
        store.record(make_resolved())
    with pytest.raises(TraceStoreError, match="only Resolved or Unresolved"):
        store.record(StepResult(run_id="bare", step="s", contract_digest=None, messages=[]))
    with pytest.raises(TraceStoreError, match="no attempts"):
        store.record(Resolved(run_id="empty", step="s", contract_digest=None, messages=[]))
    assert store.count_runs() == 1


def test_get_unknown_run(store: TraceStore) -> None:
    with pytest.raises(UnknownRunError, match="no run with id 'nope'") as info:
        store.get_run("nope")
    assert isinstance(info.value, KeyError) and isinstance(info.value, TraceStoreError)
    assert str(info.value).startswith("no run with id")


def test_match_run_ids(store: TraceStore) -> None:
    for rid in ("abc-2", "abc-1", "abd", "ab", "zz"):
        store.record(make_resolved(rid))
    assert store.match_run_ids("abc") == ["abc-1", "abc-2"]
    assert store.match_run_ids("ab", limit=2) == ["ab", "abc-1"]
    assert store.match_run_ids("a%") == [] and store.match_run_ids("q") == []


# -- atomicity -----------------------------------------------------------------------------------


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("boom")


def test_record_is_atomic_when_serialisation_fails(store: TraceStore, trace_location: Path | str) -> None:
    result = make_resolved("half")
    bad = Attempt(index=1, rung="mid", placement="local", verdict=Verdict.failed("x", value=Unprintable()))
    result.attempts[1].index = 2
    result.attempts.insert(1, bad)
    with pytest.raises(TraceStoreError, match="cannot serialise the attempt 1 value of run 'half'"):
        store.record(result)
    assert count(trace_location, "runs") == 0 and count(trace_location, "attempts") == 0
    with pytest.raises(UnknownRunError):
        store.get_run("half")
    store.record(make_resolved("after"))  # the store is still usable
    assert [r.run_id for r in store.list_runs()] == ["after"]


def test_record_is_atomic_when_an_insert_fails(store: TraceStore, trace_location: Path | str) -> None:
    result = make_resolved("dup-idx")
    result.attempts[1].index = 0  # duplicate (run_id, idx): the run row is written, then this fails
    with pytest.raises(TraceStoreError, match="cannot record run 'dup-idx'"):
        store.record(result)
    assert store.count_runs() == 0
    assert count(trace_location, "runs") == 0 and count(trace_location, "attempts") == 0
    store.record(make_resolved("after"))


# -- feedback and listing ------------------------------------------------------------------------


def test_feedback(store: TraceStore) -> None:
    store.record(make_resolved())
    store.record_feedback("run-res", False, "wrong city")
    run = store.get_run("run-res")
    assert run.feedback_success is False and run.feedback_note == "wrong city"
    assert run.feedback_at is not None and abs(run.feedback_at - datetime.now(UTC)) < timedelta(minutes=1)
    store.record_feedback("run-res", True)  # latest feedback wins
    run = store.get_run("run-res")
    assert run.feedback_success is True and run.feedback_note is None
    with pytest.raises(UnknownRunError, match="no run with id 'missing'"):
        store.record_feedback("missing", True)
    with pytest.raises(KeyError):
        store.record_feedback("missing", False)


def test_list_and_count_filters(store: TraceStore) -> None:
    for i in range(5):
        store.record(
            make_resolved(f"a{i}", step="extract", tags={"user": "ann"}), created_at=T0 + timedelta(minutes=i)
        )
    for i in range(3):
        store.record(make_unresolved(f"b{i}", step="route"), created_at=T0 + timedelta(minutes=10 + i))
    store.record(
        make_resolved("c0", step="route", tags={"user": "bob", "env": "prod"}),
        created_at=T0 + timedelta(hours=1),
    )
    store.record(
        make_resolved("c1", step="route"), created_at=T0 + timedelta(hours=1)
    )  # same time: insert order

    assert [r.run_id for r in store.list_runs(limit=3)] == ["c1", "c0", "b2"]  # newest first
    assert len(store.list_runs()) == 10 and len(store.list_runs(limit=None)) == 10
    assert store.list_runs(limit=0) == []
    assert [r.run_id for r in store.list_runs(step="route")] == ["c1", "c0", "b2", "b1", "b0"]
    assert [r.run_id for r in store.list_runs(outcome="unresolved")] == ["b2", "b1", "b0"]
    assert [r.run_id for r in store.list_runs(step="route", outcome="resolved")] == ["c1", "c0"]
    assert [r.run_id for r in store.list_runs(tag=("user", "bob"))] == ["c0"]
    assert [r.run_id for r in store.list_runs(tag=("user", "ann"), limit=2)] == ["a4", "a3"]
    assert store.list_runs(tag=("user", "carl")) == [] and store.list_runs(tag=("nokey", "x")) == []
    summary = store.list_runs(outcome="unresolved", limit=1)[0]
    assert isinstance(summary, RunSummary) and summary.n_attempts == 2 and summary.rung is None
    assert summary.reason == "ladder_exhausted" and summary.created_at == T0 + timedelta(minutes=12)

    assert store.count_runs() == 10
    assert store.count_runs(step="extract") == 5
    assert store.count_runs(outcome="unresolved") == 3
    assert store.count_runs(tag=("env", "prod"), step="route") == 1
    with pytest.raises(ValueError, match="outcome must be one of"):
        store.list_runs(outcome="maybe")


# -- concurrency ---------------------------------------------------------------------------------


def _process_writer(location: str, worker: int, n: int) -> None:
    with TraceStore(location) as s:
        for i in range(n):
            s.record(make_resolved(f"p{worker}-{i}", tags={"worker": str(worker)}))
            s.record_feedback(f"p{worker}-{i}", i % 2 == 0)


def test_concurrent_writers_in_threads(trace_location: Path | str) -> None:
    TraceStore(trace_location).close()
    errors: list[BaseException] = []

    def own_store(worker: int) -> None:
        try:
            with TraceStore(trace_location) as s:
                for i in range(25):
                    s.record(make_resolved(f"t{worker}-{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    shared = TraceStore(trace_location)

    def shared_store(worker: int) -> None:
        try:
            for i in range(10):
                shared.record(make_unresolved(f"s{worker}-{i}"))
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=own_store, args=(w,)) for w in range(8)]
    threads += [threading.Thread(target=shared_store, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    shared.close()
    assert not errors
    with TraceStore(trace_location) as s:
        assert s.count_runs(outcome="resolved") == 8 * 25
        assert s.count_runs(outcome="unresolved") == 4 * 10
    assert count(trace_location, "attempts") == (200 + 40) * 2


def test_concurrent_writers_in_processes(trace_location: Path | str) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(str(trace_location), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with TraceStore(trace_location) as s:
        assert s.count_runs() == 100
        assert all(s.count_runs(tag=("worker", str(w))) == 25 for w in range(4))
        assert len(s.labels(source="feedback")) == 100
        assert sum(r.feedback_success is True for r in s.list_runs(limit=None)) == 4 * 13
    assert count(trace_location, "attempts") == 200


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork()")
def test_store_inherited_across_fork_reconnects(store: TraceStore) -> None:
    store.record(make_resolved("parent-1"))

    def child() -> None:
        store.record(make_resolved("child"))  # must not reuse the parent's connection
        store.close()

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 0
    store.record(make_resolved("parent-2"))  # the parent's connection is untouched
    assert {r.run_id for r in store.list_runs()} == {"parent-1", "child", "parent-2"}


# -- export --------------------------------------------------------------------------------------


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_export_chat_jsonl(store: TraceStore) -> None:
    store.record(make_resolved("good", tags={}), created_at=T0)
    store.record(make_unresolved("bad"), created_at=T0 + timedelta(seconds=1))
    store.record(make_resolved("disliked"), created_at=T0 + timedelta(seconds=2))
    store.record(make_resolved("other-step", step="route"), created_at=T0 + timedelta(seconds=3))
    store.record_feedback("disliked", False, "wrong")
    store.record_feedback("good", True)

    buf = io.StringIO()
    assert store.export_chat_jsonl(buf) == 2
    lines = _lines(buf.getvalue())
    assert len(lines) == 2 and all(set(line) == {"messages"} for line in lines)
    first = lines[0]["messages"]
    assert first[:-1] == make_resolved().messages
    assert first[-1] == {"role": "assistant", "content": '{"city": "Paris", "population": 2100000}'}

    buf = io.StringIO()
    assert store.export_chat_jsonl(buf, step="extract", with_metadata=True) == 1
    (line,) = _lines(buf.getvalue())
    assert line["metadata"]["run_id"] == "good" and line["metadata"]["rung"] == "small"
    assert line["metadata"]["step"] == "extract" and line["metadata"]["outcome"] == "resolved"

    buf = io.StringIO()
    n = store.export_chat_jsonl(
        buf, include_unresolved=True, exclude_failed_feedback=False, with_metadata=True
    )
    lines = _lines(buf.getvalue())
    assert n == 4 and [x["metadata"]["run_id"] for x in lines] == ["good", "bad", "disliked", "other-step"]
    assert lines[1]["messages"][-1] == {"role": "assistant", "content": "Paris, I think"}  # last attempt text
    assert lines[1]["metadata"]["outcome"] == "unresolved"
