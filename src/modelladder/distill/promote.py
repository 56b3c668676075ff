"""``distill promote`` / ``distill rollback``: put a specialist first for its step, or undo it.

Promotion is a decision on an evaluation (:mod:`~modelladder.distill.evaluate`): the
candidate must beat the step's current first rung on holdout accuracy by ``margin`` and
must not raise the accepted-wrong rate (of the answers the gate accepts, the share that are
wrong -- the failure nobody escalates). Otherwise it refuses and says why. The
evaluation must be of *this* fleet file as it is now (same digest) and of *this* adapter
file (same SHA-256); anything else is refused as stale.

Promoting writes the specialist rung (base rung + ``adapter`` + ``step``) into the fleet,
replaces any earlier specialist of the step and sets ``[step.<name>] first_rung``. The
adapter is copied next to the history so the fleet never points into a scratch directory.

History lives beside the fleet file in ``<fleet>.history/``: ``history.jsonl`` (one line per
promotion, refusal and rollback, each with its evaluation), ``snapshots/`` (the exact bytes
of the fleet before each promotion), ``evals/`` and ``adapters/``. Rollback restores the
snapshot byte for byte -- only if the fleet is still the one that promotion wrote, so it
never undoes somebody else's later change.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelladder.distill.errors import DistillError, FleetChangedError
from modelladder.distill.evaluate import champion_rung, load_eval
from modelladder.distill.fleet_file import (
    digest_bytes,
    dumps_fleet,
    fleet_lock,
    leading_comments,
    read_fleet,
    replace_fleet,
)
from modelladder.distill.hf_base import file_sha256

__all__ = [
    "Decision", "HISTORY", "PromoteConfig", "decide", "history_dir", "promote", "read_history",
    "rollback",
]  # fmt: skip

HISTORY = "history.jsonl"


def history_dir(fleet_path: Path) -> Path:
    fleet_path = Path(fleet_path).resolve()
    return fleet_path.with_name(fleet_path.name + ".history")


def read_history(fleet_path: Path) -> list[dict[str, Any]]:
    path = history_dir(fleet_path) / HISTORY
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn last line from a crash; earlier lines are intact
    return out


def _append_history(fleet_path: Path, record: dict[str, Any]) -> None:
    d = history_dir(fleet_path)
    d.mkdir(parents=True, exist_ok=True)
    with (d / HISTORY).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _atomic_write(dst: Path, data: bytes) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dst)


# --------------------------------------------------------------------------- decision


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    view: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


def decide(report: dict[str, Any], margin: float, max_accepted_wrong_increase: float = 0.0) -> Decision:
    """Promote only if accuracy gains >= ``margin`` (a fraction) and the accepted-wrong rate
    rises by no more than ``max_accepted_wrong_increase`` -- both ways of counting it: the
    share of *accepted* answers that are wrong (how far the gate can be trusted) and the share
    of *all* steps answered wrong at the first rung. The second guards the ladder: a more
    confident specialist can lower the first rate while passing more wrong answers in all,
    which lowers the ladder's accuracy (measured in the distillation proof)."""
    view = report["primary_view"]
    v = report["views"][view]
    cand, champ = v["candidate"], v["champion"]
    if not cand.get("n"):
        return Decision(False, [f"the {view} view of the evaluation is empty"], view)
    gain = cand["accuracy"] - champ["accuracy"]
    aw_up = cand["accepted_wrong_rate"] - champ["accepted_wrong_rate"]
    all_up = cand["accepted_wrong_of_all"] - champ["accepted_wrong_of_all"]
    figures = {
        "n": cand["n"],
        "candidate_accuracy": cand["accuracy"],
        "champion_accuracy": champ["accuracy"],
        "gain_points": 100 * gain,
        "margin_points": 100 * margin,
        "candidate_accepted_wrong_rate": cand["accepted_wrong_rate"],
        "champion_accepted_wrong_rate": champ["accepted_wrong_rate"],
        "candidate_accepted_wrong_of_all": cand["accepted_wrong_of_all"],
        "champion_accepted_wrong_of_all": champ["accepted_wrong_of_all"],
    }
    reasons = []
    ok = True
    acc_line = (
        f"holdout accuracy {cand['accuracy']:.1%} vs {champ['accuracy']:.1%} for {report['champion']['rung']} "
        f"({100 * gain:+.1f} points, margin {100 * margin:.1f}) on {cand['n']} {view} examples"
    )
    aw_line = (
        f"accepted-wrong rate {cand['accepted_wrong_rate']:.1%} vs {champ['accepted_wrong_rate']:.1%} "
        f"of accepted answers, {cand['accepted_wrong_of_all']:.1%} vs {champ['accepted_wrong_of_all']:.1%} "
        f"of all steps (allowed increase {100 * max_accepted_wrong_increase:.1f} points)"
    )
    if gain < margin - 1e-12:
        ok = False
        reasons.append("does not beat the current first rung by the margin: " + acc_line)
    if max(aw_up, all_up) > max_accepted_wrong_increase + 1e-12:
        ok = False
        reasons.append("raises the accepted-wrong rate: " + aw_line)
    cert = report.get("certified")
    if cert:  # both rungs' own calibrated gates, at the same certified alpha (older reports have none)
        c, ch = cert["candidate"], cert["champion"]
        figures.update(certified_alpha=cert["alpha"], candidate_certified=c["certified"],
                       champion_certified=ch["certified"], candidate_certified_edge_share=c["edge_share"],
                       champion_certified_edge_share=ch["edge_share"])  # fmt: skip
        cert_line = (
            f"at a certified accepted-wrong rate <= {cert['alpha']:g} (confidence {cert['confidence']:g}), each rung "
            f"with its own calibrated gate: edge share {c['edge_share']:.1%} "
            f"({'certified' if c['certified'] else 'not certified'}) vs {ch['edge_share']:.1%} "
            f"({'certified' if ch['certified'] else 'not certified'}) on {c['n_report']} held-back examples"
        )
        if ch["certified"] and not c["certified"]:
            ok = False
            reasons.append("its own gate cannot certify the alpha the current first rung's can: " + cert_line)
        elif c["edge_share"] < ch["edge_share"] - 1e-12:
            ok = False
            reasons.append("keeps fewer steps at the edge at the same certified alpha: " + cert_line)
        elif ok:
            reasons.append(cert_line)
    if ok:
        reasons = [acc_line, aw_line, *reasons]
    return Decision(ok, reasons, view, figures)


# --------------------------------------------------------------------------- promote


@dataclass
class PromoteConfig:
    eval_path: Path
    fleet_path: Path | None = None  # default: the fleet the evaluation was made on
    margin: float = 0.05
    max_accepted_wrong_increase: float = 0.0
    name: str | None = None


def _specialist_name(data: dict[str, Any], base: str, step: str, history: list[dict[str, Any]]) -> str:
    names = {t.get("name") for t in data.get("rung", [])}
    n = 1 + sum(1 for h in history if h.get("action") == "promote" and h.get("step") == step)
    while f"{base}+{step}-v{n}" in names:
        n += 1
    return f"{base}+{step}-v{n}"


def promote(cfg: PromoteConfig) -> dict[str, Any]:
    """Decide and, if the candidate wins, rewrite the fleet atomically. Returns the history record
    (``record["action"]`` is ``"promote"`` or ``"refused"``)."""
    report = load_eval(Path(cfg.eval_path))
    step = report["step"]
    fleet_path = Path(cfg.fleet_path or report["fleet"]["path"])
    with fleet_lock(fleet_path):
        snap = read_fleet(fleet_path)
        if snap.digest != report["fleet"]["digest"]:
            raise FleetChangedError(
                f"the fleet file {fleet_path} changed since the evaluation ({report['fleet']['digest'][:12]} -> "
                f"{snap.digest[:12]}); evaluate again against the current fleet"
            )
        current = champion_rung(snap.fleet, step).name
        if current != report["champion"]["rung"]:
            raise DistillError(
                f"the evaluation compared against {report['champion']['rung']!r}, but step {step!r} "
                f"now starts at {current!r}; evaluate again"
            )
        adapter = Path(report["candidate"]["adapter"])
        if not adapter.is_file() or file_sha256(adapter) != report["candidate"]["adapter_sha256"]:
            raise DistillError(
                f"the adapter {adapter} is missing or not the one that was evaluated; evaluate again"
            )
        history = read_history(fleet_path)
        decision = decide(report, cfg.margin, cfg.max_accepted_wrong_increase)
        pid = uuid.uuid4().hex[:12]
        hdir = history_dir(fleet_path)
        _atomic_write(hdir / "evals" / f"{pid}.json", json.dumps(report, indent=2).encode())
        record: dict[str, Any] = {
            "id": pid,
            "time": _now(),
            "step": step,
            "fleet": str(fleet_path.resolve()),
            "decision": {
                "promote": decision.promote,
                "reasons": decision.reasons,
                "view": decision.view,
                "figures": decision.figures,
                "margin": cfg.margin,
                "max_accepted_wrong_increase": cfg.max_accepted_wrong_increase,
            },
            "champion": report["champion"]["rung"],
            "eval": f"evals/{pid}.json",
            "views": report["views"],
        }
        if not decision.promote:
            record.update(action="refused", fleet_digest=snap.digest)
            _append_history(fleet_path, record)
            return record

        base = report["candidate"]["base_rung"]
        name = cfg.name or _specialist_name(snap.data, base, step, history)
        stored = hdir / "adapters" / f"{name}.gguf"
        _atomic_copy(adapter, stored)
        data = copy.deepcopy(snap.data)
        rungs = data.get("rung", [])
        base_table = next((t for t in rungs if t.get("name") == base), None)
        if base_table is None:
            raise DistillError(f"the base rung {base!r} is not in {fleet_path}")
        new = {
            **{k: v for k, v in base_table.items() if k not in ("adapter", "step")},
            "name": name,
            "adapter": str(stored.resolve()),
            "step": step,
        }
        superseded = [t["name"] for t in rungs if t.get("step") == step and t.get("adapter")]
        kept = [t for t in rungs if t.get("name") not in superseded]
        at = (
            next(i for i, t in enumerate(kept) if t.get("name") == base) + 1
            if base not in superseded
            else len(kept)
        )
        kept.insert(at, new)
        data["rung"] = kept
        data.setdefault("step", {}).setdefault(step, {})["first_rung"] = name
        header = [line for line in leading_comments(snap.text) if "[modelladder distill]" not in line]
        header.append(
            f"# [modelladder distill] last change {_now()}: {name} first for step {step!r} "
            f"(history: {hdir.name}/)"
        )
        text = dumps_fleet(data, header)
        snapshot = hdir / "snapshots" / f"{pid}-before.toml"
        _atomic_write(snapshot, snap.text.encode("utf-8"))
        after = replace_fleet(fleet_path, text, snap.digest)
        record.update(
            action="promote",
            rung=name,
            adapter=str(stored.resolve()),
            base_rung=base,
            superseded=superseded,
            before_digest=snap.digest,
            after_digest=after,
            snapshot=f"snapshots/{pid}-before.toml",
        )
        _append_history(fleet_path, record)
        return record


# --------------------------------------------------------------------------- rollback


def rollback(fleet_path: Path, step: str) -> dict[str, Any]:
    """Restore the fleet as it was before the step's latest (not yet rolled back) promotion."""
    fleet_path = Path(fleet_path)
    with fleet_lock(fleet_path):
        snap = read_fleet(fleet_path)
        history = read_history(fleet_path)
        undone = {h.get("promotion") for h in history if h.get("action") == "rollback"}
        live = [
            h
            for h in history
            if h.get("action") == "promote" and h.get("step") == step and h["id"] not in undone
        ]
        if not live:
            raise DistillError(f"no promotion of step {step!r} to roll back in {history_dir(fleet_path)}")
        last = live[-1]
        if snap.digest != last["after_digest"]:
            later = [
                h
                for h in history
                if h.get("action") in ("promote", "rollback")
                and h["time"] >= last["time"]
                and h["id"] != last["id"]
            ]
            hint = (
                f"later changes by modelladder: {', '.join(h['action'] + ' ' + h['step'] for h in later)} -- "
                "roll those back first"
                if later
                else "it was edited by hand"
            )
            raise FleetChangedError(
                f"the fleet file {fleet_path} is no longer the one promotion {last['id']} wrote ({hint}); "
                f"the earlier version is in {history_dir(fleet_path) / last['snapshot']}"
            )
        previous = (history_dir(fleet_path) / last["snapshot"]).read_bytes()
        if digest_bytes(previous) != last["before_digest"]:
            raise DistillError(
                f"the snapshot {last['snapshot']} does not match its recorded digest; restore by hand"
            )
        after = replace_fleet(fleet_path, previous.decode("utf-8"), snap.digest)
        record = {
            "id": uuid.uuid4().hex[:12],
            "time": _now(),
            "action": "rollback",
            "step": step,
            "promotion": last["id"],
            "rung": last.get("rung"),
            "before_digest": snap.digest,
            "after_digest": after,
        }
        _append_history(fleet_path, record)
        return record
