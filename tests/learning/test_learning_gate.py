"""The calibrated gate over a real trace store: calibrate, certify or not, pick up a new version
without a restart, keep the previous one on bad input or a corrupt row, fall back on drift;
and the ladder's seam (the ladder never imports modelladder.learning)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelladder.contracts import Choice
from modelladder.contracts.base import Verdict
from modelladder.fleet import Fleet, Rung
from modelladder.ladder import Ladder, Step
from modelladder.ladder.outcome import Attempt, Resolved
from modelladder.learning import CalibrationError, StoreGate, calibrate_step
from modelladder.traces import TraceStore
from tests.support.learning import CONTRACT, DIGEST, edge_attempt, fill, fixed


@pytest.fixture
def store(trace_location: Path | str) -> TraceStore:
    s = TraceStore(trace_location)  # once SQLite, once PostgreSQL
    yield s
    s.close()


def test_calibrate_certifies_and_the_gate_applies_it(store: TraceStore) -> None:
    fill(store, 1200, np.random.default_rng(1))
    version, cert = calibrate_step(store, "route", alpha=0.05, confidence=0.95)
    assert version == 1 and cert.certified and cert.upper_bound <= 0.05 and cert.accept_share > 0.1
    gate = StoreGate(store, poll_s=0, drift_s=0)
    sure = gate.assess("route", DIGEST, edge_attempt(-0.05))
    unsure = gate.assess("route", DIGEST, edge_attempt(-2.8))
    assert sure is not None and sure.accept and sure.version == 1
    assert unsure is not None and not unsure.accept and unsure.reason == "gate:score"
    assert gate.assess("other-step", DIGEST, edge_attempt(-0.05)) is None  # no calibration: no opinion
    assert gate.assess("route", "another-digest", edge_attempt(-0.05)) is None
    cloud = Attempt(index=1, rung="big", placement="cloud", verdict=Verdict.passed("billing"))
    assert gate.assess("route", DIGEST, cloud) is None  # a rung it was not calibrated on
    assert gate.status()["route"]["certified"] is True


def test_not_certified_escalates_everything_and_a_new_version_is_picked_up(store: TraceStore) -> None:
    fill(store, 60, np.random.default_rng(2), wrong_rate=0.0)
    version, cert = calibrate_step(store, "route", alpha=0.05, confidence=0.95)
    assert not cert.certified and cert.labels_needed and cert.labels_needed > 0
    gate = StoreGate(store, poll_s=0, drift_s=0)
    v = gate.assess("route", DIGEST, edge_attempt(-0.01))
    assert v is not None and not v.accept and v.reason == "gate:not_certified" and v.version == version
    # more labels arrive; a new calibration is written by another store object; no restart
    fill(store, 400, np.random.default_rng(3), prefix="more", wrong_rate=0.0)
    other = TraceStore(store.path)
    v2, cert2 = calibrate_step(other, "route", alpha=0.05, confidence=0.95)
    other.close()
    assert cert2.certified and v2 == version + 1
    now = gate.assess("route", DIGEST, edge_attempt(-0.01))
    assert now is not None and now.accept and now.version == v2


def test_bad_input_is_one_clear_error_and_the_previous_calibration_stays(store: TraceStore) -> None:
    fill(store, 1200, np.random.default_rng(4))
    good, _ = calibrate_step(store, "route", alpha=0.05, confidence=0.95)
    for kwargs, match in (
        ({"alpha": 0.0, "confidence": 0.95}, r"within \(0, 1\)"),
        ({"alpha": 0.05, "confidence": 1.0}, r"within \(0, 1\)"),
        ({"alpha": 0.05, "confidence": 0.95, "contract_digest": "feedfacefeedface"}, "contract digest"),
        ({"alpha": 0.05, "confidence": 0.95, "min_labels": 10_000}, "at least 10000"),
    ):
        with pytest.raises(CalibrationError, match=match):
            calibrate_step(store, "route", **kwargs)
    assert [c.version for c in store.calibrations()] == [good]
    with pytest.raises(CalibrationError, match="has 0 labelled"):
        calibrate_step(store, "nothing-here", alpha=0.05, confidence=0.95)
    # a corrupt newest row: logged, skipped, the previous valid one stays in force
    store.save_calibration("route", contract_digest=DIGEST, alpha=0.05, confidence=0.95, certified=True,
                           body={"format": 1, "threshold": 0.5, "rungs": ["small"], "model": {"kind": "magic"}})  # fmt: skip
    gate = StoreGate(store, poll_s=0, drift_s=0)
    v = gate.assess("route", DIGEST, edge_attempt(-0.05))
    assert v is not None and v.version == good
    assert any("corrupt" in e and "magic" in e for e in gate.errors)


def test_labels_from_two_contracts_are_refused(store: TraceStore) -> None:
    fill(store, 40, np.random.default_rng(5))
    other = Choice(["a", "b"])
    store.record(Resolved(run_id="x", step="route", contract_digest=other.digest(), messages=[],
                          attempts=[edge_attempt(-0.1)]))  # fmt: skip
    store.add_label("x", attempt_idx=0, kind="correct", value=1, source="checker")
    with pytest.raises(CalibrationError, match="2 contract digests"):
        calibrate_step(store, "route", alpha=0.05, confidence=0.95)
    _, cert = calibrate_step(store, "route", alpha=0.05, confidence=0.95, contract_digest=DIGEST)
    assert cert.n_held_out < 40


def test_drift_falls_back_to_escalate_all(store: TraceStore) -> None:
    fill(store, 1200, np.random.default_rng(6))
    calibrate_step(store, "route", alpha=0.05, confidence=0.95)
    gate = StoreGate(store, poll_s=0, drift_s=0)
    assert gate.assess("route", DIGEST, edge_attempt(-0.05)).accept  # type: ignore[union-attr]
    # after calibration: accepted answers come back wrong (shadow/feedback labels)
    fill(store, 40, np.random.default_rng(7), prefix="live", wrong_rate=0.5)
    v = gate.assess("route", DIGEST, edge_attempt(-0.05))
    assert v is not None and not v.accept and v.reason == "gate:drift"
    st = gate.status()["route"]
    assert st["drift"] and st["live_labels"] == 40 and st["live_accepted_wrong"] > 0.2


def test_a_ladder_with_the_gate_follows_its_verdicts(store: TraceStore) -> None:
    fleet = Fleet(rungs=[Rung("small", "llamacpp", 1, "edge"), Rung("big", "reference", 9, "cloud")])
    confidence = [-0.02, -0.02]  # the small rung's token log-probabilities, changed below
    small, big = fixed("scripted", "billing", confidence), fixed("scripted", "shipping", [0.0, 0.0])
    gate = StoreGate(store, poll_s=0, drift_s=0)
    ladder = Ladder(fleet, store=store, backends={"small": small, "big": big}, gate=gate)
    step = Step("route", CONTRACT)
    msgs = [{"role": "user", "content": "where is my parcel"}]
    assert ladder.run(step, msgs).rung == "small"  # no calibration yet: today's gate (none) applies
    fill(store, 60, np.random.default_rng(8), wrong_rate=0.0)
    calibrate_step(store, "route", alpha=0.05, confidence=0.95)  # too few labels: not certified
    res = ladder.run(step, msgs)
    assert res.rung == "big" and res.escalations == ["gate:not_certified"] and res.gate_version == 1
    assert store.get_run(res.run_id).attempts[0].escalation_reason == "gate:not_certified"
    fill(store, 1200, np.random.default_rng(9), prefix="m")
    calibrate_step(store, "route", alpha=0.05, confidence=0.95)
    res = ladder.run(step, msgs)
    assert res.rung == "small" and res.gate_version == 2  # confident answer, certified gate: kept
    confidence[:] = [-2.9, -2.9]
    assert ladder.run(step, msgs).escalations == ["gate:score"]


def test_ladder_never_imports_learning() -> None:
    code = "import sys, modelladder.ladder, modelladder.ladder.runner; print('modelladder.learning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    src = Path(__file__).parents[2] / "src" / "modelladder" / "ladder"
    offenders = [
        p.name
        for p in src.glob("*.py")
        if "import modelladder.learning" in p.read_text() or "from modelladder.learning" in p.read_text()
    ]
    assert offenders == []


def test_gate_models_stored_before_the_decision_signal_still_load() -> None:
    """A logistic gate fitted on the first eight features (no ``numeric`` in its encoder)
    reads and scores as before; a new one carries the decision signal and names its features."""
    import numpy as np

    from modelladder.learning.features import NUMERIC, NUMERIC_V1, from_fields
    from modelladder.learning.model import GateModel, ModelError

    old = {"kind": "logistic", "encoder": {"tools": ["f"], "rungs": ["tiny"]}, "cv_auc": {},
           "params": {"mean": [0.0] * 10, "scale": [1.0] * 10, "coef": [0.1] * 10, "intercept": 0.0}}  # fmt: skip
    model = GateModel.from_dict(old)
    assert model.encoder.numeric == NUMERIC_V1 and len(model.encoder.names) == 10
    row = from_fields(mean=-0.2, min_=-0.5, n_value=3, completion_tokens=9,
                      signals={"decision_logprob": -0.3}, value=[{"name": "f"}], rung="tiny")  # fmt: skip
    assert len(model.encoder.vector(row)) == 10 and np.isfinite(model.encoder.vector(row)).all()
    assert row.numeric["decision_logprob"] == -0.3 and row.numeric["no_decision"] == 0.0
    fresh = {**old, "encoder": {**old["encoder"], "numeric": list(NUMERIC)}}
    with pytest.raises(ModelError, match="values for"):
        GateModel.from_dict(fresh)  # 10 coefficients for 12 features: refused, not misread
    with pytest.raises(ModelError, match="unknown features"):
        GateModel.from_dict({**old, "encoder": {**old["encoder"], "numeric": ["colour"]}})
