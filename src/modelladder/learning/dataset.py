"""Labelled attempts of one step, read from the trace store.

Which attempts: the edge attempts that passed their contract (the only ones a gate decides
on; a contract failure escalates whatever the gate says). Their label ("was this answer
right?") comes from the label rows, in order of trust: a ``checker`` (a benchmark's scorer),
then ``feedback`` (a person; run-level feedback labels the accepted attempt), then a
``teacher`` (a larger rung agreed under the contract's equivalence). Within a source the
latest row wins; earlier rows stay in the store.

Teacher labels are derived here from the runs themselves: when an edge answer was escalated
and a larger rung's answer was accepted in the same run, the two are compared with the
contract's :meth:`~modelladder.contracts.base.Contract.equivalent` and the result appended as
a ``teacher`` label (once per attempt).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from modelladder.learning.features import Row, from_attempt
from modelladder.traces.records import RunRecord

__all__ = ["Example", "TRUST", "derive_teacher_labels", "examples", "gated", "half"]

log = logging.getLogger("modelladder.learning")
TRUST = ("checker", "feedback", "teacher")


@dataclass(frozen=True)
class Example:
    run_id: str
    attempt_idx: int
    contract_digest: str | None
    row: Row
    correct: bool
    source: str
    accepted: bool


def gated(a: Any) -> bool:
    """An attempt the gate decides on: an edge answer that passed its contract, whole."""
    return (a.placement == "edge" and a.verdict_ok is True and a.error is None
            and a.finish_reason != "length")  # fmt: skip


def _contract(run: RunRecord) -> Any:
    from modelladder.contracts import contract_from_spec

    if not run.contract:
        return None
    try:
        return contract_from_spec(run.contract)
    except Exception as exc:  # a contract this version cannot rebuild: no teacher label
        log.warning("run %s: cannot rebuild its contract (%s)", run.run_id, exc)
        return None


def derive_teacher_labels(store: Any, key: str) -> int:
    """Append a ``teacher`` label to every escalated edge answer of step ``key`` whose run
    was then answered by a larger rung; returns how many were added."""
    added = 0
    for run_id in store.iter_step_runs(key):
        run = store.get_run(run_id)
        top = run.accepted
        if top is None:
            continue
        have = {(lab.attempt_idx, lab.source) for lab in store.labels(run_id)}
        contract = None
        for a in run.attempts:
            if a.index >= top.index or not gated(a) or (a.index, "teacher") in have:
                continue
            contract = contract or _contract(run)
            if contract is None:
                break
            agree = contract.equivalent(a.value, top.value)
            store.add_label(run_id, attempt_idx=a.index, kind="correct", value=float(agree), source="teacher",
                            note="escalation", detail={"rung": top.rung})  # fmt: skip
            added += 1
    return added


def examples(store: Any, key: str) -> list[Example]:
    """Every labelled, gated attempt of step ``key``, oldest run first."""
    out: list[Example] = []
    for run_id in store.iter_step_runs(key):
        run = store.get_run(run_id)
        labels = store.labels(run_id)
        for a in run.attempts:
            if not gated(a):
                continue
            best: tuple[int, str, float] | None = None  # (trust rank, source, value)
            for lab in labels:  # in id order: a later row of the same source replaces an earlier one
                mine = lab.attempt_idx == a.index and lab.kind == "correct"
                run_level = lab.attempt_idx is None and lab.kind == "success" and a.accepted
                if not (mine or run_level) or lab.source not in TRUST:
                    continue
                rank = TRUST.index(lab.source)
                if best is None or rank <= best[0]:
                    best = (rank, lab.source, lab.value)
            if best is not None:
                out.append(Example(run_id, a.index, run.contract_digest, from_attempt(a), best[2] >= 0.5,
                                   best[1], a.accepted))  # fmt: skip
    return out


def half(run_id: str, salt: str = "") -> int:
    """0 or 1 by a hash of the run id: which half of the labels fits the model (0) and which
    certifies its threshold (1). A hash, so a label never changes side as labels accrue."""
    return hashlib.sha256(f"{salt}{run_id}".encode()).digest()[0] & 1
