"""Labels as append-only rows (migration 4): old stores keep their feedback, new feedback
appends, every run carries its step key, episode and config digest, and teacher equivalence
follows each contract kind."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelladder.contracts import Choice, JsonSchema, ToolCalls
from modelladder.fleet import Fleet, Rung
from modelladder.ladder import Ladder, Step
from modelladder.ladder.runner import derive_episode_id
from modelladder.traces import TraceStore, UnknownRunError
from modelladder.traces import migrations as mig
from tests.support.learning import fixed
from tests.support.traces import raw as raw_db

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
    "required": ["city"]}}}  # fmt: skip


def _fleet() -> Fleet:
    return Fleet(rungs=[Rung("small", "llamacpp", 1, "edge"), Rung("big", "reference", 9, "cloud")])


def test_v3_store_upgrades_and_keeps_its_feedback(trace_location: Path | str) -> None:
    db = trace_location
    with raw_db(db) as conn:
        assert conn.migrate(target=3) == [1, 2, 3]
        for rid, step, digest in (("a", "extract", "d1"), ("b", "default", "d2"), ("c", "default", None)):
            conn.execute(
                "INSERT INTO runs (run_id, created_at, step, contract_digest, messages, outcome) "
                "VALUES (?, ?, ?, ?, '[]', 'resolved')",
                (rid, T0.isoformat(), step, digest),
            )
        conn.execute("UPDATE runs SET feedback_success = 0, feedback_note = 'wrong', feedback_at = ? "
                     "WHERE run_id = 'a'", (T0.isoformat(),))  # fmt: skip

    with TraceStore(db) as s:
        assert s.schema_version == mig.LATEST_VERSION >= 4
        run = s.get_run("a")
        assert run.feedback_success is False and run.feedback_note == "wrong" and run.feedback_at == T0
        (label,) = s.labels("a")
        assert (label.source, label.kind, label.value, label.attempt_idx) == (
            "feedback",
            "success",
            0.0,
            None,
        )
        assert s.get_run("b").step_key == "contract:d2"  # unnamed steps key on their contract
        assert s.get_run("c").step_key == "default" and run.step_key == "extract"
        s.record_feedback("a", True, "fixed")  # appends: the old label stays
        assert [lab.value for lab in s.labels("a")] == [0.0, 1.0]
        run = s.get_run("a")
        assert run.feedback_success is True and run.feedback_note == "fixed"
        assert s.list_runs(step="extract")[0].feedback_success is True
        raw = s._db.execute("SELECT feedback_success FROM runs WHERE run_id = 'a'").fetchone()[0]
        assert raw == 0  # the old column is never written again


def test_labels_validate_their_target(trace_location: Path | str) -> None:
    with TraceStore(trace_location) as s:
        with pytest.raises(UnknownRunError):
            s.add_label("nope", kind="correct", value=1, source="checker")
        with pytest.raises(ValueError, match="source"):
            s.add_label(None, episode_id="e", kind="correct", value=1, source="oracle")
        with pytest.raises(ValueError, match="run_id or an episode_id"):
            s.add_label(None, kind="correct", value=1, source="checker")
        assert s.add_label(None, episode_id="ep-1", kind="success", value=1, source="feedback") > 0
        assert s.labels()[0].episode_id == "ep-1"


def test_ladder_records_key_episode_config_and_signals(trace_location: Path | str) -> None:
    store = TraceStore(trace_location)
    contract = Choice(["billing", "shipping"])
    ladder = Ladder(_fleet(), store=store, backends={
        "small": fixed("small", "billing", [-0.1, -0.5, -2.0, -0.05]),
        "big": fixed("big", "billing", [0.0])})  # fmt: skip
    msgs = [{"role": "user", "content": "charged twice"}]
    r1 = ladder.run(Step("default", contract), msgs)
    r2 = ladder.run(Step("default", contract), [*msgs, {"role": "assistant", "content": "x"},
                                                {"role": "user", "content": "again"}])  # fmt: skip
    r3 = ladder.run(Step("route", contract), msgs, episode_id="conv-7")
    rec1, rec3 = store.get_run(r1.run_id), store.get_run(r3.run_id)
    assert rec1.step_key == f"contract:{contract.digest()}" and rec3.step_key == "route"
    assert rec1.episode_id == store.get_run(r2.run_id).episode_id == derive_episode_id(msgs)
    assert rec3.episode_id == "conv-7"
    assert rec1.config_digest and len(rec1.config_digest) == 16
    conf = rec1.attempts[0].confidence
    assert conf is not None and conf.min_logprob == -2.0 and conf.first_logprob == -0.1
    assert conf.p25_logprob == pytest.approx(-0.875)  # numpy.quantile([-2, -0.5, -0.1, -0.05], 0.25)
    assert conf.p10_logprob == pytest.approx(-2.0 + 0.3 * 1.5)
    store.close()


def test_config_digest_changes_with_the_policy(tmp_path: Path) -> None:
    from modelladder.ladder import Policy

    ladder = Ladder(_fleet(), backends={"small": fixed("small", "billing", [-0.1]),
                                        "big": fixed("big", "billing", [0.0])})  # fmt: skip
    step = Step("route", Choice(["billing", "shipping"]))
    msgs = [{"role": "user", "content": "hi"}]
    a = ladder.run(step, msgs).config_digest
    assert a == ladder.run(step, msgs).config_digest
    assert a != ladder.run(step, msgs, policy=Policy(min_mean_logprob=-0.5)).config_digest


def test_equivalence_per_contract_kind() -> None:
    tools = ToolCalls([WEATHER], parallel=True)
    a = [{"name": "get_weather", "arguments": {"city": " Oslo", "unit": None}}]
    b = [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    assert tools.equivalent(a, b)
    assert not tools.equivalent(a, [{"name": "get_weather", "arguments": {"city": "Bergen"}}])
    two = [
        {"name": "get_weather", "arguments": {"city": "A"}},
        {"name": "get_weather", "arguments": {"city": "B"}},
    ]
    assert tools.equivalent(two, list(reversed(two)))  # parallel calls: a multiset
    assert not ToolCalls([WEATHER], parallel=True).equivalent(two, two[:1])
    assert not ToolCalls([WEATHER]).equivalent([], b)  # declining is not calling
    schema = JsonSchema({"type": "object", "properties": {"n": {"type": "number"}}})
    assert schema.equivalent({"n": 2, "m": [1]}, {"m": [1.0], "n": 2.0})
    assert not schema.equivalent({"n": 2}, {"n": 3})
    choice = Choice(["billing", "shipping"])
    assert choice.equivalent("billing", "billing") and not choice.equivalent("billing", "shipping")


def test_tool_steps_record_where_in_the_turn_they_were(trace_location: Path | str) -> None:
    """The gate's turn-position signals: right after the user's message, or after N results."""
    from modelladder.contracts import ToolCalls
    from modelladder.ladder.loops import turn_position
    from modelladder.learning.features import from_attempt

    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    user = [{"role": "user", "content": "do it"}]
    called = [*user, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"}]  # fmt: skip
    assert turn_position(user) == (True, 0) and turn_position(called) == (False, 1)
    assert turn_position([]) == (False, 0)
    store = TraceStore(trace_location)
    ladder = Ladder(_fleet(), store=store, backends={
        "small": fixed("small", "<tool_call>[]</tool_call>", [-0.3]), "big": fixed("big", "x", [0.0])})  # fmt: skip
    step = Step("act", ToolCalls([tool], allow_no_call=True))
    first, later = ladder.run(step, user), ladder.run(step, called)
    c1, c2 = (store.get_run(r.run_id).attempts[0].confidence for r in (first, later))
    assert (c1.turn_start, c1.tool_results) == (1.0, 0.0) and (c2.turn_start, c2.tool_results) == (0.0, 1.0)
    row = from_attempt(store.get_run(first.run_id).attempts[0])
    assert row.numeric["decline_at_turn_start"] == 1.0 and row.tool == "<decline>"
    assert from_attempt(store.get_run(later.run_id).attempts[0]).numeric["decline_at_turn_start"] == 0.0
    store.close()
