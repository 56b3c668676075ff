"""Shadow checks: an accepted edge answer is also asked of the next eligible rung in the
background; the caller is never delayed, and edge_only steps are never shadowed off the edge."""

from __future__ import annotations

import time
from pathlib import Path

from modelladder.contracts import Choice
from modelladder.fleet import Fleet, Rung
from modelladder.ladder import Ladder, Policy, Step
from modelladder.ladder.outcome import Attempt
from modelladder.ladder.policy import shadow_rung
from modelladder.traces import TraceStore
from tests.support.learning import held

SMALL = Rung("small", "llamacpp", 1, "edge")
MID = Rung("mid", "llamacpp", 5, "edge")
BIG = Rung("big", "reference", 9, "cloud")
STEP = Step("route", Choice(["billing", "shipping"]))
MSGS = [{"role": "user", "content": "charged twice"}]


def accepted(rung: Rung) -> Attempt:
    return Attempt(index=0, rung=rung.name, placement=rung.placement, accepted=True)


def test_shadow_rung_is_pure_and_honours_edge_only() -> None:
    on = Policy(shadow_rate=1.0)
    assert shadow_rung(on, [SMALL, BIG], accepted(SMALL), 0.3) == BIG
    assert shadow_rung(Policy(shadow_rate=0.2), [SMALL, BIG], accepted(SMALL), 0.3) is None  # not drawn
    assert shadow_rung(Policy(), [SMALL, BIG], accepted(SMALL), 0.0) is None  # off by default
    assert shadow_rung(on, [SMALL, BIG], accepted(BIG), 0.0) is None  # only edge answers
    edge_only = Policy(shadow_rate=1.0, edge_only=True)
    assert shadow_rung(edge_only, [SMALL, BIG], accepted(SMALL), 0.0) is None
    assert shadow_rung(edge_only, [SMALL, MID, BIG], accepted(SMALL), 0.0) == MID


def test_shadow_never_delays_the_caller_and_records_a_teacher_label(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "t.sqlite")
    big, release = held("big", "shipping", delay_s=0.5)
    release.clear()  # the shadow rung blocks until the caller has its answer
    ladder = Ladder(Fleet(rungs=[SMALL, BIG]), store=store,
                    backends={"small": held("small", "billing")[0], "big": big})  # fmt: skip
    t0 = time.perf_counter()
    res = ladder.run(STEP, MSGS, policy=Policy(shadow_rate=1.0))
    waited = time.perf_counter() - t0
    assert res.rung == "small" and waited < 0.3  # returned while the shadow check was still held
    assert store.labels(res.run_id) == []
    release.set()
    ladder.drain_shadows(timeout_s=10)
    (label,) = store.labels(res.run_id)
    assert (label.source, label.kind, label.value, label.attempt_idx) == ("teacher", "correct", 0.0, 0)
    assert label.note == "shadow" and label.detail["rung"] == "big" and "cost_usd" in label.detail
    assert len(big.calls) == 1
    store.close()


def test_edge_only_is_never_shadowed_off_the_edge(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "t.sqlite")
    (big, _), (mid, _) = held("big", "billing"), held("mid", "billing")
    ladder = Ladder(Fleet(rungs=[SMALL, MID, BIG]), store=store,
                    backends={"small": held("small", "billing")[0], "mid": mid, "big": big})  # fmt: skip
    for _ in range(5):
        ladder.run(STEP, MSGS, policy=Policy(shadow_rate=1.0, edge_only=True))
    ladder.drain_shadows(timeout_s=10)
    assert not big.calls and len(mid.calls) == 5
    assert all(lab.detail["placement"] == "edge" and lab.value == 1.0 for lab in store.labels())
    ladder2 = Ladder(
        Fleet(rungs=[SMALL, BIG]), store=store, backends={"small": held("small", "billing")[0], "big": big}
    )
    ladder2.run(STEP, MSGS, policy=Policy(shadow_rate=1.0, edge_only=True))
    ladder2.drain_shadows(timeout_s=10)
    assert not big.calls
    store.close()
