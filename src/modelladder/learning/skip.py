"""The ex-ante skip (issue 15, item 8): from the request alone, predict that the edge rung will
fail the step, and start higher when it will, so the ladder does not pay the edge's latency on
steps it was going to lose.

What a skip risks is cost, not correctness: a skipped step is answered by a larger rung. So the
bound is on the *lost* edge answers: among the steps the predictor skips, the share the edge
would have answered right is certified <= ``max_lost`` with confidence ``1 - delta``, with the
same exact test and fixed-sequence threshold search as the gate (:mod:`modelladder.learning.bound`),
on labels the fit never saw (a hash of the run id splits them). When no threshold certifies,
the step is "not certified" and nothing is skipped (the opposite of the gate's fallback: here
the safe side is to try the edge).

Labels of an edge attempt: a failure when it failed its contract, errored, was truncated or
repeated an answered call; otherwise its ``correct`` label (checker, feedback, teacher, in
that order of trust, as the gate reads them); unlabelled answers are left out. Skipped
attempts carry no label, so a step that is skipped stops producing labels: the ladder still
runs the edge on a share ``skip_explore`` of the steps it would skip (a hash of the run id).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from modelladder.ladder.loops import LOOP_REASON
from modelladder.ladder.outcome import SKIPPED
from modelladder.learning import bound
from modelladder.learning.dataset import derive_teacher_labels, examples, gated, half
from modelladder.learning.features import Row
from modelladder.learning.model import GateModel, ModelError, fit, threshold_grid
from modelladder.learning.request_features import REQUEST_NUMERIC, from_request

__all__ = [
    "KIND",
    "SkipCalibration",
    "SkipExample",
    "calibrate_skip",
    "fit_and_certify_skip",
    "parse_skip",
    "skip_examples",
]

KIND = "skip"  # the ``kind`` of a skip calibration's body (a gate's body has none)
FORMAT = 1
MIN_LABELS = 30


@dataclass(frozen=True)
class SkipExample:
    run_id: str
    row: Row
    edge_ok: bool  # the edge's answer would have been kept and right


@dataclass(frozen=True)
class SkipCalibration:
    """A skip predictor as the ladder applies it: skip ``rung`` when ``p_fail >= threshold``."""

    version: int
    step_key: str
    contract_digest: str | None
    rung: str
    max_lost: float
    delta: float
    certified: bool
    threshold: float | None
    model: GateModel
    certification: dict[str, Any]
    created_at: str = ""

    def p_fail(self, row: Row) -> float:
        return 1.0 - self.model.score(row)


def _first_edge(run: Any) -> Any:
    for a in run.attempts:
        if a.placement == "edge" and a.error != SKIPPED:
            return a
    return None


def skip_examples(store: Any, key: str) -> list[SkipExample]:
    """One example per run of step ``key`` whose first edge attempt has a known outcome."""
    labelled = {(e.run_id, e.attempt_idx): e.correct for e in examples(store, key)}
    out: list[SkipExample] = []
    for run_id in store.iter_step_runs(key):
        run = store.get_run(run_id)
        a = _first_edge(run)
        if a is None or not run.messages:
            continue
        if not gated(a) or a.escalation_reason == LOOP_REASON:
            ok: bool | None = False
        else:
            ok = labelled.get((run_id, a.index))
        if ok is None:
            continue
        out.append(SkipExample(run_id, from_request(run.messages, run.contract, a.rung), ok))
    return out


def fit_and_certify_skip(
    train: list[SkipExample], held_out: list[SkipExample], *, max_lost: float, delta: float
) -> tuple[GateModel, bound.Certification]:
    """The pure core: fit "edge succeeds" on ``train``; certify on ``held_out`` the threshold on
    ``p_fail`` whose skipped steps the edge would have got right at most ``max_lost`` of the time."""
    model = fit([e.row for e in train], [e.edge_ok for e in train], signals=(), numeric=REQUEST_NUMERIC)
    n_min = math.ceil(math.log(delta) / math.log(1.0 - max_lost))
    first = max(0.05, 1.5 * n_min / max(len(held_out), 1))
    grid = [
        t for t in threshold_grid([1.0 - model.score(e.row) for e in train], first_share=first) if t >= 0.5
    ]
    cert = bound.certify(
        [1.0 - model.score(e.row) for e in held_out], [e.edge_ok for e in held_out], grid or [1.0],
        alpha=max_lost, delta=delta, labelled_share=len(held_out) / max(len(train) + len(held_out), 1) or 1.0,
    )  # fmt: skip
    return model, cert


def calibrate_skip(
    store: Any,
    key: str,
    *,
    max_lost: float = 0.1,
    confidence: float = 0.95,
    min_labels: int = MIN_LABELS,
) -> tuple[int, bound.Certification]:
    """Fit and certify step ``key``'s skip predictor and store it as a new calibration version.

    Raises :class:`~modelladder.learning.calibrate.CalibrationError` before anything is written
    (bad levels, too few labels, one outcome only, several contracts or edge rungs)."""
    from modelladder.learning.calibrate import CalibrationError

    try:
        bound.check_levels(max_lost, 1.0 - confidence)
    except ValueError as exc:
        raise CalibrationError(str(exc)) from exc
    derive_teacher_labels(store, key)
    found = skip_examples(store, key)
    if len(found) < min_labels:
        raise CalibrationError(
            f"step {key!r} has {len(found)} edge attempts with a known outcome; a skip predictor needs at "
            f"least {min_labels} (label more steps: shadow checks, `traces` feedback, a benchmark's checker)"
        )
    rungs = sorted({e.row.rung for e in found})
    if len(rungs) > 1:
        raise CalibrationError(f"step {key!r} was first tried on several edge rungs ({', '.join(rungs)})")
    outcomes = {e.edge_ok for e in found}
    if len(outcomes) < 2:
        raise CalibrationError(
            f"step {key!r}: every one of its {len(found)} edge attempts "
            f"{'succeeded' if True in outcomes else 'failed'}; a predictor needs both outcomes"
        )
    train = [e for e in found if half(e.run_id, "skip") == 0]
    held = [e for e in found if half(e.run_id, "skip") == 1]
    if len({e.edge_ok for e in train}) < 2 or not held:
        raise CalibrationError(f"step {key!r}: the hash split left a half without both outcomes")
    model, cert = fit_and_certify_skip(train, held, max_lost=max_lost, delta=1.0 - confidence)
    digest = store.get_run(found[-1].run_id).contract_digest  # the latest contract (features read the tools)
    body = {
        "format": FORMAT, "kind": KIND, "rung": rungs[0], "threshold": cert.threshold,
        "model": model.as_dict(), "certification": cert.as_dict(),
        "labels": {"fit": len(train), "held_out": len(held), "edge_ok": sum(e.edge_ok for e in found)},
    }  # fmt: skip
    version = store.save_calibration(
        key, contract_digest=digest, alpha=max_lost, confidence=confidence,
        certified=cert.certified, body=body,
    )  # fmt: skip
    return version, cert


def body_kind(row: Any) -> str:
    """``"skip"`` or ``"gate"`` for a stored calibration row (a corrupt body reads as a gate's,
    whose parser then reports it)."""
    try:
        body = json.loads(row.body)
    except (TypeError, ValueError):
        return "gate"
    return KIND if isinstance(body, dict) and body.get("kind") == KIND else "gate"


def parse_skip(row: Any) -> SkipCalibration:
    """A stored skip calibration row, checked; a corrupt one raises ``CalibrationError``."""
    from modelladder.learning.calibrate import CalibrationError, corrupt

    try:
        body = json.loads(row.body)
        if body.get("format") != FORMAT or body.get("kind") != KIND:
            raise CalibrationError(f"unknown skip calibration format {body.get('format')!r}")
        threshold = body["threshold"]
        if row.certified and not isinstance(threshold, int | float):
            raise CalibrationError("a certified skip calibration without a numeric threshold")
        model = GateModel.from_dict(body["model"])
        if model.kind != "logistic":
            raise CalibrationError(f"a skip predictor is a logistic model, not {model.kind!r}")
        return SkipCalibration(
            version=row.version, step_key=row.step_key, contract_digest=row.contract_digest,
            rung=str(body["rung"]), max_lost=row.alpha, delta=1.0 - row.confidence, certified=row.certified,
            threshold=float(threshold) if threshold is not None else None, model=model,
            certification=dict(body.get("certification") or {}), created_at=row.created_at.isoformat(),
        )  # fmt: skip
    except (CalibrationError, ValueError, KeyError, TypeError, AttributeError, ModelError) as exc:
        raise corrupt(row, exc) from exc
