"""The ex-ante skip (issue 15, item 8) over a real trace store: fit and certify on labelled
runs, a bound that holds on a simulated stream with a known failure rate, a ladder that passes
over the edge only where it may (never ``edge_only``, never the last rung, an exploration
share), and bad input that leaves the previous calibration in force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from modelladder.backends.base import Generation
from modelladder.backends.scripted import Call, ScriptedBackend
from modelladder.cli import main
from modelladder.contracts import ToolCalls
from modelladder.contracts.base import Verdict
from modelladder.fleet import Fleet, Rung
from modelladder.ladder import Ladder, Step
from modelladder.ladder.outcome import SKIPPED, Attempt, Resolved
from modelladder.ladder.policy import Policy, may_skip
from modelladder.learning import CalibrationError, StoreGate, calibrate_skip
from modelladder.learning.request_features import from_request
from modelladder.learning.skip import SkipExample, fit_and_certify_skip
from modelladder.traces import TraceStore
from tests.support.contracts import WEATHER

TOOLS = ToolCalls([WEATHER], answer=True)
SPEC = {"kind": TOOLS.kind, "spec": TOOLS.spec()}
USER = [{"role": "system", "content": "You help."}, {"role": "user", "content": "Weather in Paris?"}]
AFTER_TOOL = [
    *USER,
    {"role": "assistant", "content": None,
     "tool_calls": [{"id": "c1", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21 C"},
]  # fmt: skip
P_OK = {"user": 0.03, "tool": 0.7}  # the simulated edge: right after a tool result, rarely at a turn start


def _request(rng: np.random.Generator) -> tuple[str, list[dict]]:
    where = "user" if rng.uniform() < 0.5 else "tool"
    return where, [dict(m) for m in (USER if where == "user" else AFTER_TOOL)]


def fill(store: TraceStore, n: int, rng: np.random.Generator, prefix: str = "s") -> None:
    """Runs of step ``agent`` whose edge attempt succeeds with ``P_OK`` by turn position; half of
    the failures are contract failures, half wrong answers labelled by a checker."""
    for i in range(n):
        where, msgs = _request(rng)
        ok = rng.uniform() < P_OK[where]
        contract_fail = not ok and rng.uniform() < 0.5
        a = Attempt(index=0, rung="small", placement="edge", text="x", completion_tokens=3,
                    verdict=Verdict.failed("bad_json") if contract_fail else Verdict.passed([]),
                    accepted=not contract_fail)  # fmt: skip
        rid = f"{prefix}{i}"
        store.record(Resolved(run_id=rid, step="agent", contract_digest=TOOLS.digest(), messages=msgs,
                              attempts=[a], contract=SPEC))  # fmt: skip
        if not contract_fail:
            store.add_label(rid, attempt_idx=0, kind="correct", value=float(ok), source="checker")


@pytest.fixture
def store(tmp_path: Path) -> TraceStore:
    s = TraceStore(tmp_path / "t.sqlite")
    yield s
    s.close()


def test_calibrate_skip_certifies_and_predicts_from_the_request(store: TraceStore) -> None:
    fill(store, 400, np.random.default_rng(1))
    version, cert = calibrate_skip(store, "agent", max_lost=0.1, confidence=0.95)
    assert cert.certified and cert.upper_bound is not None and cert.upper_bound <= 0.1
    assert 0.3 < cert.accept_share < 0.7  # about the turn-start half is skipped
    g = StoreGate(store, poll_s=0, drift_s=0)
    at_start = g.predict_skip("agent", SPEC, USER, "small")
    after = g.predict_skip("agent", SPEC, AFTER_TOOL, "small")
    assert at_start is not None and at_start.skip and at_start.version == version and at_start.p_fail > 0.8
    assert after is not None and not after.skip
    assert g.predict_skip("agent", SPEC, USER, "another-rung") is None
    assert g.predict_skip("other-step", SPEC, USER, "small") is None
    # the skip calibration is not a gate calibration: the gate still has no opinion
    assert g.status() == {} and g.skip_status()["agent"]["certified"] is True


def test_the_bound_holds_on_a_simulated_stream() -> None:
    """Fit and certify on 400 labelled steps, measure on 2,000 fresh ones, 20 times: the share
    of skipped steps the edge would have got right stays <= max_lost in >= 95 % of them."""
    held = 0
    rng = np.random.default_rng(7)

    def draw(n: int) -> list[SkipExample]:
        out = []
        for i in range(n):
            where, msgs = _request(rng)
            # a third, noisier feature: long user messages fail more often
            msgs[1]["content"] = "x" * int(rng.integers(5, 400))
            p = P_OK[where] * (1.0 - len(msgs[1]["content"]) / 800)
            out.append(SkipExample(f"r{i}", from_request(msgs, SPEC, "small"), bool(rng.uniform() < p)))
        return out

    for _ in range(20):
        train, certify, fresh = draw(200), draw(200), draw(2000)
        model, cert = fit_and_certify_skip(train, certify, max_lost=0.1, delta=0.05)
        if not cert.certified:
            held += 1  # skips nothing: loses nothing
            continue
        skipped = [e for e in fresh if 1.0 - model.score(e.row) >= cert.threshold]
        held += sum(e.edge_ok for e in skipped) / max(len(skipped), 1) <= 0.1
    assert held >= 19


def test_bad_input_is_one_clear_error_and_nothing_is_written(store: TraceStore) -> None:
    with pytest.raises(CalibrationError, match="at least 30"):
        calibrate_skip(store, "agent")
    fill(store, 300, np.random.default_rng(2))
    good, _ = calibrate_skip(store, "agent")
    for kwargs, match in (({"max_lost": 0.0}, r"within \(0, 1\)"), ({"confidence": 1.5}, r"within \(0, 1\)"),
                          ({"min_labels": 10_000}, "at least 10000")):  # fmt: skip
        with pytest.raises(CalibrationError, match=match):
            calibrate_skip(store, "agent", **kwargs)
    assert [c.version for c in store.calibrations()] == [good]
    # a corrupt newest skip row: logged, the previous one stays in force
    store.save_calibration("agent", contract_digest=None, alpha=0.1, confidence=0.95, certified=True,
                           body={"format": 1, "kind": "skip", "rung": "small", "threshold": 0.5,
                                 "model": {"kind": "isotonic"}})  # fmt: skip
    g = StoreGate(store, poll_s=0, drift_s=0)
    v = g.predict_skip("agent", SPEC, USER, "small")
    assert v is not None and v.version == good and any("corrupt" in e for e in g.errors)
    result = CliRunner().invoke(
        main, ["gate", "calibrate-skip", "agent", "--max-lost", "2", "--db", str(store.path)]
    )
    assert result.exit_code == 2 and "within (0, 1)" in result.output and "stays in force" in result.output


def test_one_outcome_only_is_refused(store: TraceStore) -> None:
    for i in range(40):
        store.record(Resolved(run_id=f"o{i}", step="agent", contract_digest=TOOLS.digest(), messages=USER,
                              attempts=[Attempt(index=0, rung="small", placement="edge",
                                                verdict=Verdict.failed("bad_json"))], contract=SPEC))  # fmt: skip
    with pytest.raises(CalibrationError, match="every one of its 40 edge attempts failed"):
        calibrate_skip(store, "agent")


def _counting(name: str, text: str) -> tuple[ScriptedBackend, list[int]]:
    calls: list[int] = []

    def handler(call: Call) -> Generation:
        calls.append(1)
        return Generation(text, 10, 3, 0.01, token_logprobs=[-0.01], free=[True])

    return ScriptedBackend(name, handler), calls


def test_the_ladder_passes_over_the_edge_only_where_it_may(store: TraceStore) -> None:
    fill(store, 600, np.random.default_rng(3))
    calibrate_skip(store, "agent")
    fleet = Fleet(rungs=[Rung("small", "llamacpp", 1, "edge"), Rung("big", "reference", 9, "cloud")])
    small, small_calls = _counting("scripted", "It is sunny.")
    big, big_calls = _counting("scripted", "Sunny, 21 C.")
    g = StoreGate(store, poll_s=0, drift_s=0)
    ladder = Ladder(fleet, store=store, backends={"small": small, "big": big}, gate=g, skip=g)
    step = Step("agent", TOOLS, policy=Policy(skip_explore=0.0))
    res = ladder.run(step, USER[1:])
    assert res.rung == "big" and small_calls == [] and len(big_calls) == 1
    assert res.escalations == ["skip:predicted_fail"]
    stored = store.get_run(res.run_id)
    assert stored.attempts[0].error == SKIPPED and stored.attempts[0].latency_s == 0.0
    assert "skip calibration version 1" in (stored.attempts[0].error_detail or "")
    # after a tool result the edge is predicted to do well: it runs
    assert ladder.run(step, AFTER_TOOL[1:]).rung == "small" and len(small_calls) == 1
    # edge_only: never skipped (and never off the edge)
    res = ladder.run(Step("agent", TOOLS, policy=Policy(edge_only=True, skip_explore=0.0)), USER[1:])
    assert res.rung == "small" and len(small_calls) == 2
    # exploration: with skip_explore=1 the edge always runs; with skip_ex_ante off, too
    for pol in (Policy(skip_explore=1.0), Policy(skip_ex_ante=False)):
        assert ladder.run(Step("agent", TOOLS, policy=pol), USER[1:]).rung == "small"
    # a skipped rung is not an attempt: max_attempts=1 still reaches the larger rung
    res = ladder.run(Step("agent", TOOLS, policy=Policy(skip_explore=0.0, max_attempts=1)), USER[1:])
    assert res.rung == "big"
    # explain says why the edge did not run
    out = CliRunner().invoke(main, ["gate", "explain", res.run_id, "--db", str(store.path)])
    assert out.exit_code == 0 and "not run, skip:predicted_fail" in out.output


def test_may_skip_is_pure_policy() -> None:
    small, mid, big = (
        Rung("small", "llamacpp", 1, "edge"),
        Rung("mid", "llamacpp", 3, "edge"),
        Rung("big", "x", 9, "cloud"),
    )
    memo = Rung("memo", "memo", 0, "edge")
    pol = Policy(skip_explore=0.1)
    assert may_skip(pol, [small, big], small, [], draw=0.5)
    assert not may_skip(pol, [small, big], small, [], draw=0.05)  # the exploration share
    assert not may_skip(pol, [small], small, [], draw=0.5)  # the last rung left
    assert not may_skip(pol, [small, big], big, [], draw=0.5)  # not an edge rung
    assert not may_skip(pol, [memo, small, big], memo, [], draw=0.5)  # a memo costs nothing
    tried = [Attempt(index=0, rung="big", placement="cloud")]
    assert not may_skip(pol, [small, big], small, tried, draw=0.5)  # nothing left above it
    assert not may_skip(Policy(edge_only=True), [small, mid], small, [], draw=0.5)
    with pytest.raises(ValueError, match="skip_explore"):
        Policy(skip_explore=1.5)
