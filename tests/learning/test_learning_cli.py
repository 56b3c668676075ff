"""``modelladder gate status|calibrate|explain`` on a real trace store; bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from modelladder.cli import main
from modelladder.fleet import Fleet, Rung
from modelladder.ladder import Ladder, Step
from modelladder.learning import StoreGate
from modelladder.traces import TraceStore
from tests.support.learning import CONTRACT, fill, fixed


@pytest.fixture
def db(trace_location: Path | str) -> Path | str:
    with TraceStore(trace_location) as s:  # once SQLite, once PostgreSQL
        fill(s, 1200, np.random.default_rng(11))
    return trace_location


def gate(*args: str):
    return CliRunner().invoke(main, ["gate", *args], catch_exceptions=False)


def test_calibrate_status_explain(db: Path | str) -> None:
    before = gate("status", "--db", str(db))
    assert before.exit_code == 0 and "route: 1200 runs, 1200 labels; not calibrated" in before.stdout
    done = gate("calibrate", "route", "--alpha", "0.05", "--db", str(db))
    assert done.exit_code == 0 and "version 1, certified" in done.stdout
    st = json.loads(gate("status", "--json", "--db", str(db)).stdout)
    assert st["steps"]["route"]["certified"] and st["steps"]["route"]["version"] == 1
    with TraceStore(db) as s:
        fleet = Fleet(rungs=[Rung("small", "llamacpp", 1, "edge"), Rung("big", "reference", 9, "cloud")])
        ladder = Ladder(fleet, store=s, backends={"small": fixed("scripted", "billing", [-2.9, -2.9]), "big": fixed("scripted", "other", [0, 0])},
                        gate=StoreGate(s, poll_s=0))  # fmt: skip
        res = ladder.run(Step("route", CONTRACT), [{"role": "user", "content": "hi"}])
    out = gate("explain", res.run_id[:10], "--db", str(db))
    assert out.exit_code == 0 and "calibration version 1" in out.stdout
    assert "escalated: gate:score; gate score" in out.stdout and "attempt 1 on big (cloud)" in out.stdout


BAD_INPUTS = [
    (["--alpha", "0"], "within (0, 1)"),
    (["--alpha", "1.2"], "within (0, 1)"),
    (["--contract-digest", "0000000000000000"], "contract digest"),
    (["--min-labels", "5000"], "at least 5000"),
]


def test_bad_input_exits_2_and_keeps_the_previous_calibration(db: Path | str) -> None:
    assert gate("calibrate", "route", "--db", str(db)).exit_code == 0
    for args, message in BAD_INPUTS:  # one store for all four: filling it is the slow part
        bad = gate("calibrate", "route", *args, "--db", str(db))
        assert bad.exit_code == 2 and message in bad.stderr and "previous calibration stays" in bad.stderr, (
            args
        )
        with TraceStore(db) as s:
            assert [c.version for c in s.calibrations("route")] == [1]
