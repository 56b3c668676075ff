"""``distill refine``: rebuild, retrain, evaluate challenger against champion, promote or not.

Made to run from cron: it does nothing (successfully) when fewer than ``min_new_traces``
runs of the step arrived since its last completed run, or while another refine of the same
step holds the lock. The fleet is touched at most once, at the very end, by the same
atomic, digest-checked replacement ``distill promote`` uses; if the fleet file changed at
any point after refine read it, nothing is written. The watermark (newest trace
considered) only advances after a run completes, so a crash or a refusal-by-error simply
means the next run tries again with everything.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelladder.distill.dataset import DatasetConfig, build_dataset
from modelladder.distill.errors import DistillError, FleetChangedError
from modelladder.distill.evaluate import EvalConfig, base_rung_for, champion_rung, evaluate
from modelladder.distill.fleet_file import read_fleet
from modelladder.distill.promote import PromoteConfig, history_dir, promote
from modelladder.fleet import FleetError
from modelladder.traces import TraceStore, TraceStoreError

__all__ = ["RefineConfig", "new_traces", "refine"]


@dataclass
class RefineConfig:
    step: str
    fleet_path: Path
    db: Path | str | None = None  # a SQLite file or a postgresql:// URL
    work_dir: Path | None = None  # default: <fleet>.history/refine/<step>
    min_new_traces: int = 50
    keep_runs: int = 3
    tags: dict[str, str] = field(default_factory=dict)
    step_def: str | None = None
    teacher_rungs: tuple[str, ...] = ()
    holdout: float = 0.2
    dedup_threshold: float = 0.9
    redact_emails: bool = False
    redact_phones: bool = False
    redact_patterns: tuple[str, ...] = ()
    max_prompt_tokens: int | None = None
    min_train: int = 8
    train: dict[str, Any] = field(default_factory=dict)  # extra TrainConfig fields (epochs, lr, ...)
    margin: float = 0.05
    max_accepted_wrong_increase: float = 0.0
    eval_limit: int | None = None
    progress: bool = True


def _state_path(cfg: RefineConfig) -> Path:
    return history_dir(cfg.fleet_path) / f"refine-{cfg.step}.json"


def _read_state(cfg: RefineConfig) -> dict[str, Any]:
    path = _state_path(cfg)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}  # a damaged state file: behave as if refine never ran (it only costs a retrain)


def _write_state(cfg: RefineConfig, state: dict[str, Any]) -> None:
    path = _state_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def new_traces(cfg: RefineConfig, since: str | None) -> tuple[int, str | None]:
    """Runs of the step (matching the tags) recorded after ``since``, and the newest timestamp."""
    try:
        store = TraceStore(cfg.db, create=False)
    except TraceStoreError as exc:
        raise DistillError(str(exc)) from exc
    with store:
        runs = [
            r
            for r in store.list_runs(limit=None, step=cfg.step)
            if all(r.tags.get(k) == v for k, v in cfg.tags.items())
        ]
    newest = max((r.created_at.isoformat() for r in runs), default=None)
    cutoff = datetime.fromisoformat(since) if since else None
    n = sum(1 for r in runs if cutoff is None or r.created_at > cutoff)
    return n, newest


def refine(cfg: RefineConfig) -> dict[str, Any]:
    """One refinement round. Returns ``{"action": "noop" | "promote" | "refused", ...}``."""
    if cfg.min_new_traces < 0:
        raise DistillError("--min-new-traces must be >= 0")
    hdir = history_dir(cfg.fleet_path)
    hdir.mkdir(parents=True, exist_ok=True)
    lock = (hdir / f"refine-{cfg.step}.lock").open("a")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return {"action": "noop", "reason": f"another refine of step {cfg.step!r} is running"}
        return _refine_locked(cfg)
    finally:
        lock.close()


def _refine_locked(cfg: RefineConfig) -> dict[str, Any]:
    snap = read_fleet(cfg.fleet_path)
    state = _read_state(cfg)
    n_new, newest = new_traces(cfg, state.get("watermark"))
    if n_new < cfg.min_new_traces:
        return {
            "action": "noop",
            "reason": f"{n_new} new trace(s) of step {cfg.step!r} since the last refine "
            f"({state.get('last_run') or 'never'}); {cfg.min_new_traces} needed",
            "new_traces": n_new,
        }
    champion = champion_rung(snap.fleet, cfg.step)
    base = base_rung_for(snap.fleet, champion)
    try:
        base_gguf = base.resolve_path()
    except FleetError as exc:
        raise DistillError(str(exc)) from exc
    root = Path(cfg.work_dir) if cfg.work_dir else history_dir(cfg.fleet_path) / "refine" / cfg.step
    work = root / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work.mkdir(parents=True, exist_ok=True)

    manifest = build_dataset(
        DatasetConfig(
            step=cfg.step,
            out_dir=work / "dataset",
            db=cfg.db,
            tags=dict(cfg.tags),
            teacher_rungs=cfg.teacher_rungs,
            holdout=cfg.holdout,
            dedup_threshold=cfg.dedup_threshold,
            redact_emails=cfg.redact_emails,
            redact_phones=cfg.redact_phones,
            redact_patterns=cfg.redact_patterns,
            max_prompt_tokens=cfg.max_prompt_tokens,
            base_gguf=base_gguf,
            prompt_format=base.prompt_format,
            step_def=cfg.step_def,
            min_train=cfg.min_train,
        )
    )
    from modelladder.distill.train import TrainConfig, train

    trained = train(
        TrainConfig(
            data_dir=work / "dataset",
            out_dir=work / "train",
            base_gguf=base_gguf,
            prompt_format=base.prompt_format,
            fresh=True,
            progress=cfg.progress,
            **cfg.train,
        )
    )
    if trained.gguf is None:
        raise DistillError("training produced no GGUF adapter")
    report = evaluate(
        EvalConfig(
            data_dir=work / "dataset",
            fleet_path=cfg.fleet_path,
            adapter=trained.gguf,
            out=work / "eval.json",
            champion=champion.name,
            limit=cfg.eval_limit,
            progress=cfg.progress,
        )
    )
    if report["fleet"]["digest"] != snap.digest:
        raise FleetChangedError(
            f"the fleet file {cfg.fleet_path} changed while refine was training; nothing was "
            "written -- the next refine starts from the current fleet"
        )
    record = promote(
        PromoteConfig(
            eval_path=work / "eval.json",
            fleet_path=cfg.fleet_path,
            margin=cfg.margin,
            max_accepted_wrong_increase=cfg.max_accepted_wrong_increase,
        )
    )
    _write_state(
        cfg,
        {
            "watermark": newest,
            "last_run": datetime.now(UTC).isoformat(timespec="seconds"),
            "last_result": record["action"],
            "last_work_dir": str(work),
        },
    )
    for old in sorted(p for p in root.iterdir() if p.is_dir())[: -cfg.keep_runs]:
        shutil.rmtree(old, ignore_errors=True)
    return {
        "action": record["action"],
        "record": record,
        "work_dir": str(work),
        "new_traces": n_new,
        "train_examples": manifest["counts"]["train"],
        "train_seconds": trained.report.get("train_seconds"),
    }
