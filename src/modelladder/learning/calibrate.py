"""Calibrate one step's gate on its labelled traces and store it as a new version.

The labels of the step are split in two by a hash of the run id: one half fits the gate model
(:mod:`modelladder.learning.model`) and fixes the sequence of candidate thresholds; the other
half, never seen by the fit, certifies the threshold (:mod:`modelladder.learning.bound`). The
result -- certified with a threshold, or "not certified" with the labels still needed -- is
written in one transaction; bad input raises :class:`CalibrationError` before anything is
written, so the previous calibration stays in force.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from modelladder.learning import bound
from modelladder.learning.dataset import Example, derive_teacher_labels, examples, half
from modelladder.learning.model import GateModel, fit, threshold_grid

__all__ = [
    "Calibration",
    "CalibrationError",
    "FORMAT",
    "MIN_LABELS",
    "calibrate_step",
    "fit_and_certify",
    "parse",
]

MIN_LABELS = 30  # below this a fit is noise: refuse, rather than store a meaningless gate
FORMAT = 1  # the calibration body's format version


class CalibrationError(ValueError):
    """A calibration that must not be made (too few labels, foreign labels, bad levels)."""


@dataclass(frozen=True)
class Calibration:
    """A calibration as the gate applies it (parsed and checked from a stored row)."""

    version: int
    step_key: str
    contract_digest: str | None
    alpha: float
    delta: float
    certified: bool
    threshold: float | None
    rungs: tuple[str, ...]
    model: GateModel
    certification: dict[str, Any]
    created_at: str = ""


def fit_and_certify(
    train: list[Example], held_out: list[Example], *, alpha: float, delta: float, method: str
) -> tuple[GateModel, bound.Certification]:
    """The pure core: fit on ``train``, certify on ``held_out`` (used by the proof script too)."""
    model = fit([e.row for e in train], [e.correct for e in train])
    # A fixed sequence stops at its first failure, so it must not start where no test can pass:
    # with k = 0 wrong, n accepted certify alpha only once (1 - alpha)^n <= delta. Start where
    # about 1.5x that many held-out answers would be accepted (from the held-out *count* only).
    n_min = math.ceil(math.log(delta) / math.log(1.0 - alpha))
    first = max(0.05, 1.5 * n_min / max(len(held_out), 1))
    grid = threshold_grid([model.score(e.row) for e in train], first_share=first)
    share = len(held_out) / max(len(train) + len(held_out), 1)
    cert = bound.certify(
        [model.score(e.row) for e in held_out], [not e.correct for e in held_out], grid,
        alpha=alpha, delta=delta, method=method, labelled_share=share or 1.0,
    )  # fmt: skip
    return model, cert


def calibrate_step(
    store: Any,
    key: str,
    *,
    alpha: float,
    confidence: float,
    contract_digest: str | None = None,
    method: str = "fixed_sequence",
    min_labels: int = MIN_LABELS,
    all_contracts: bool = False,
) -> tuple[int, bound.Certification]:
    """Calibrate step ``key`` and store the result; returns ``(version, certification)``.

    ``all_contracts``: one gate over every contract the named step has had (an agent whose
    tool set changes per conversation), applied to any of them; the caller asserts that its
    answers are alike enough for one bound. Default: one contract only."""
    try:
        bound.check_levels(alpha, 1.0 - confidence)
    except ValueError as exc:
        raise CalibrationError(str(exc)) from exc
    if method not in bound.METHODS:
        raise CalibrationError(f"method must be one of {', '.join(bound.METHODS)}, not {method!r}")
    derive_teacher_labels(store, key)
    found = examples(store, key)
    digests = sorted({str(e.contract_digest) for e in found})
    if contract_digest is not None:
        mine = [e for e in found if e.contract_digest == contract_digest]
        if found and not mine:
            raise CalibrationError(
                f"step {key!r} has no labels for contract digest {contract_digest}; its labels are from "
                f"contract digest(s) {', '.join(digests)}"
            )
        found = mine
    elif len(digests) > 1 and not all_contracts:
        raise CalibrationError(
            f"the labels of step {key!r} come from {len(digests)} contract digests ({', '.join(digests)}): "
            "a gate certified for one contract says nothing of another; pass --contract-digest (or "
            "--all-contracts for one gate over all of them)"
        )
    if len(found) < min_labels:
        raise CalibrationError(
            f"step {key!r} has {len(found)} labelled edge answers; a calibration needs at least {min_labels} "
            "(add labels: shadow checks, `traces` feedback, or a benchmark's checker)"
        )
    train = [e for e in found if half(e.run_id) == 0]
    held = [e for e in found if half(e.run_id) == 1]
    if not train or not held:
        raise CalibrationError(f"step {key!r}: the hash split left one half empty ({len(found)} labels)")
    model, cert = fit_and_certify(train, held, alpha=alpha, delta=1.0 - confidence, method=method)
    body = {
        "format": FORMAT,
        "threshold": cert.threshold,
        "rungs": sorted({e.row.rung for e in found}),
        "model": model.as_dict(),
        "certification": cert.as_dict(),
        "labels": {"fit": len(train), "held_out": len(held),
                   "by_source": {s: sum(e.source == s for e in found) for s in ("checker", "feedback", "teacher")}},
    }  # fmt: skip
    digest = contract_digest if contract_digest is not None else (found[0].contract_digest if found else None)
    if all_contracts and contract_digest is None:
        digest = None  # applies to every contract of the step
    version = store.save_calibration(
        key, contract_digest=digest, alpha=alpha, confidence=confidence, certified=cert.certified, body=body
    )
    return version, cert


def parse(row: Any) -> Calibration:
    """A stored calibration row, checked; a corrupt one raises :class:`CalibrationError`."""
    import json

    from modelladder.learning.model import ModelError

    try:
        body = json.loads(row.body)
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise CalibrationError(
                f"unknown calibration format {body.get('format') if isinstance(body, dict) else body!r}"
            )
        threshold = body["threshold"]
        if row.certified and not isinstance(threshold, int | float):
            raise CalibrationError("a certified calibration without a numeric threshold")
        return Calibration(
            version=row.version, step_key=row.step_key, contract_digest=row.contract_digest,
            alpha=row.alpha, delta=1.0 - row.confidence, certified=row.certified,
            threshold=float(threshold) if threshold is not None else None,
            rungs=tuple(str(r) for r in body["rungs"]), model=GateModel.from_dict(body["model"]),
            certification=dict(body.get("certification") or {}), created_at=row.created_at.isoformat(),
        )  # fmt: skip
    except (CalibrationError, ValueError, KeyError, TypeError, ModelError) as exc:
        raise corrupt(row, exc) from exc


def corrupt(row: Any, exc: Exception) -> CalibrationError:
    """The one error for a stored calibration row (gate or skip) that cannot be read."""
    what = str(exc) if isinstance(exc, CalibrationError) else f"{type(exc).__name__}: {exc}"
    return CalibrationError(f"calibration version {row.version} of step {row.step_key!r} is corrupt: {what}")
