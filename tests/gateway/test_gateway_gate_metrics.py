"""The calibrated gate and the ex-ante skip seen from a running gateway: per-step certified
alpha, live accepted-wrong estimate and shadow rate in ``/metrics`` (issue 15, item 11), and a
skipped edge rung counted as such; over a real trace store and a real socket."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from modelladder.learning import calibrate_skip, calibrate_step
from modelladder.traces import TraceStore
from tests.learning.test_learning_skip import fill as fill_agent
from tests.support.gateway import gateway, scripted, scripted_fleet
from tests.support.learning import fill as fill_route

pytestmark = pytest.mark.server


def test_gate_lines_in_metrics(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "t.sqlite")
    fill_route(store, 1200, np.random.default_rng(1))
    calibrate_step(store, "route", alpha=0.05, confidence=0.95)
    fill_route(store, 30, np.random.default_rng(2), prefix="live", wrong_rate=0.0)  # labelled after it
    fill_agent(store, 400, np.random.default_rng(3))
    calibrate_skip(store, "agent", max_lost=0.1)
    fleet = scripted_fleet("tiny", "small", steps={"route": {"shadow_rate": 0.25}})
    with gateway(fleet, store, {"tiny": scripted("tiny"), "small": scripted("small")}) as srv:
        text = httpx.get(srv.base_url + "/metrics").text
    store.close()
    assert 'modelladder_gate_certified{step="route"} 1' in text
    assert 'modelladder_gate_alpha{step="route"} 0.05' in text
    assert 'modelladder_gate_calibration_version{step="route"} 1' in text
    assert 'modelladder_gate_live_labels{step="route"} 30' in text
    assert 'modelladder_gate_live_accepted_wrong{step="route"} 0' in text
    assert 'modelladder_gate_drift{step="route"} 0' in text
    assert (
        'modelladder_skip_certified{step="agent"} 1' in text
        and 'modelladder_skip_max_lost{step="agent"} 0.1' in text
    )
    assert 'modelladder_gate_certified{step="agent"}' not in text  # a skip calibration is not a gate
    assert (
        'modelladder_shadow_rate{step="route"} 0.25' in text
        and 'modelladder_shadow_rate{step="default"} 0' in text
    )


def test_a_skipped_rung_is_counted_as_skipped_not_as_an_escalated_attempt() -> None:
    from modelladder.gateway.metrics import Metrics
    from modelladder.ladder.outcome import SKIP_REASON, SKIPPED, Attempt

    m = Metrics(lambda: [], gates=lambda: (_ for _ in ()).throw(RuntimeError("store closed")))
    m.on_attempt(
        Attempt(index=0, rung="tiny", placement="edge", error=SKIPPED, escalation_reason=SKIP_REASON)
    )
    text = m.render()
    assert 'modelladder_attempts_total{rung="tiny",outcome="skipped"} 1' in text
    assert 'modelladder_escalations_total{reason="skip:predicted_fail"} 1' in text
    assert 'modelladder_attempt_duration_seconds_bucket{rung="tiny"' not in text  # it never ran
    assert "modelladder_gate_certified{" not in text  # an unreadable gate status shows no samples
