"""Which recorded answers may become examples, read out of the trace store.

A demonstration that is wrong teaches the edge model to be wrong, so an answer is indexed only
when it is *verified* and *still valid*:

* verified: the run's accepted attempt carries a ``correct`` label >= 0.5, or the run a
  ``success`` label >= 0.5 (any source: teacher, checker, feedback), and no label on either
  says it was wrong (< 0.5) -- not even an older one later contradicted: a disputed answer
  costs one demonstration, a wrong one costs every step it is shown to;
* still valid: the run's stored contract (``{"kind", "spec"}``) is rebuilt today and
  re-validates the accepted text against the stored messages. A contract that changed its
  parser, or a spec this version cannot rebuild, drops the answer (counted in
  ``skipped_invalid``) instead of indexing what the step would now reject. Free-text steps
  (no contract at all) have nothing to re-validate; their label alone decides.

The value indexed is the one the contract parses *today*, so a demonstration is always in the
shape the live step produces.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelladder.contracts import contract_from_spec
from modelladder.learning.example_index import Example, ExampleIndex
from modelladder.learning.example_query import input_digest, step_query
from modelladder.traces.records import RunRecord
from modelladder.traces.store import TraceStore

__all__ = ["TRUST", "RebuildReport", "examples_from_store", "rebuild_from_store", "verify_run"]

log = logging.getLogger("modelladder.learning")
TRUST = ("checker", "feedback", "teacher")  # which source an example is credited to, when several agree


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild indexed: ``added`` examples (per key in ``keys``), and the resolved runs
    left out because their answer no longer validates, has no positive label, or has a negative one."""

    added: int
    skipped_invalid: int
    skipped_unlabelled: int
    keys: dict[str, int] = field(default_factory=dict)
    skipped_negative: int = 0


def _jsonable(value: Any) -> Any:
    def default(obj: Any) -> Any:
        dump = getattr(obj, "model_dump", None)
        if callable(dump) and not isinstance(obj, type):  # Pydantic models, contracts' Answer
            return dump(mode="json")
        return str(obj)

    return json.loads(json.dumps(value, default=default, ensure_ascii=False))


def verify_run(store: TraceStore, run: RunRecord, key: str | None = None) -> tuple[str, Example | None]:
    """``("ok", example)`` for a verified, still valid answer, else ``(why, None)`` with why one
    of ``"unresolved"``, ``"unlabelled"``, ``"negative"``, ``"invalid"``. ``key``: the step key
    the run was listed under (default: the run's own)."""
    acc = run.accepted
    if run.outcome != "resolved" or acc is None:
        return "unresolved", None
    best: tuple[int, str] | None = None
    for lab in store.labels(run.run_id):  # in id order
        on_answer = lab.attempt_idx == acc.index and lab.kind == "correct"
        on_run = lab.attempt_idx is None and lab.kind == "success"
        if not (on_answer or on_run):
            continue
        if lab.value < 0.5:
            return "negative", None
        rank = TRUST.index(lab.source) if lab.source in TRUST else len(TRUST)
        if best is None or rank < best[0]:
            best = (rank, lab.source)
    if best is None:
        return "unlabelled", None
    value: Any = acc.text
    if run.contract is not None or run.contract_digest is not None:
        try:
            if run.contract is None:
                raise ValueError("the run has a contract digest but no stored contract")
            verdict = contract_from_spec(run.contract).validate(acc.text, run.messages)
        except Exception as exc:  # a spec this version cannot rebuild is not valid today
            log.info("run %s: its contract cannot be rebuilt (%s); not an example", run.run_id, exc)
            return "invalid", None
        if not verdict.ok:
            log.info(
                "run %s: its answer no longer validates (%s); not an example", run.run_id, verdict.reason
            )
            return "invalid", None
        value = verdict.value
    messages = [m for m in run.messages if m.get("role") not in ("system", "developer")]
    return "ok", Example(
        id=run.run_id,
        key=key or run.step_key or run.step,
        query=step_query(messages),
        digest=input_digest(messages),
        messages=messages,
        value=_jsonable(value),
        text=acc.text,
        source=best[1],
        created_at=run.created_at.timestamp(),
        episode=run.episode_id,
    )


def _scan(store: TraceStore, key: str | None) -> Iterator[tuple[str, Example | None]]:
    keys = [key] if key is not None else [k for k, _, _ in store.step_keys()]
    for k in keys:
        for run_id in store.iter_step_runs(k):
            yield verify_run(store, store.get_run(run_id), k)


def examples_from_store(store: TraceStore, key: str | None = None) -> list[Example]:
    """Every verified, still valid answer of one step key (``None``: all of them), oldest first."""
    return [ex for why, ex in _scan(store, key) if ex is not None]


def rebuild_from_store(index: ExampleIndex, store: TraceStore, *, key: str | None = None) -> RebuildReport:
    """Make the index hold exactly the store's examples of ``key`` (``None``: of every key,
    which also drops keys the store no longer has), in one transaction."""
    examples: list[Example] = []
    counts = {"invalid": 0, "unlabelled": 0, "negative": 0}
    per_key: dict[str, int] = {}
    for why, ex in _scan(store, key):
        if ex is not None:
            examples.append(ex)
            per_key[ex.key] = per_key.get(ex.key, 0) + 1
        elif why in counts:
            counts[why] += 1
    index.replace(examples, keys=None if key is None else [key])
    return RebuildReport(added=len(examples), skipped_invalid=counts["invalid"],
                         skipped_unlabelled=counts["unlabelled"], keys=per_key,
                         skipped_negative=counts["negative"])  # fmt: skip
