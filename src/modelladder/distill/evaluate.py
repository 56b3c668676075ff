"""``distill eval``: the candidate specialist against the current first rung, on the holdout.

Both rungs run through the real :class:`~modelladder.ladder.Ladder` (one rung each, the
step's confidence gate as configured), so validity and gate acceptance are what the ladder
would decide in production. The candidate is the base rung plus the adapter: the
``llamacpp`` backend switches the adapter on the one resident base model per request.

Views:

* ``inputs`` -- every input of the holdout half (escalated or not), when the step has an
  external checker (BFCL's AST checker for bench steps): the distribution the first rung
  really sees. Primary view when present.
* ``teacher`` -- the holdout teacher examples, judged against the teacher's answer (or the
  checker when there is one). The only view for application steps.

Figures per rung: accuracy (correct / n, gate ignored), validity (passes the contract),
gate acceptance, accepted-wrong rate (of the answers the gate accepted, the share that are
wrong -- the bench's definition: how far the gate can be trusted; ``accepted_wrong_of_all``
is the same count over all steps), latency, and a
ladder projection with this rung first and the teacher's path behind it: escalation rate,
edge share, cost per 1k steps and ladder accuracy (escalated steps cost and score what the
recorded teacher answers did).

The champion's attempts are already in the traces (it was the first rung tried), so by
default they are re-judged from the dataset instead of generated again (``reuse_recorded``):
the same text, confidence and latency the ladder recorded, checked against today's contract
and gate. The candidate always runs live.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelladder._progress import progress_bar
from modelladder.backends.base import Backend
from modelladder.distill.dataset import HOLDOUT, HOLDOUT_INPUTS, load_manifest, read_jsonl
from modelladder.distill.errors import DistillError
from modelladder.distill.fleet_file import read_fleet
from modelladder.distill.hf_base import file_sha256
from modelladder.distill.steps import StepSource, make_source
from modelladder.fleet import Fleet, Rung
from modelladder.ladder import Attempt, Confidence, Ladder, Policy, Resolved, Step, eligible_rungs, judge

__all__ = [
    "CANDIDATE", "EvalConfig", "Evaluator", "Outcome", "TEXT_CAP", "base_rung_for", "candidate_rung",
    "champion_rung", "escalation_profile", "evaluate", "load_eval", "metrics", "report_digest",
    "single_rung_policy",
]  # fmt: skip

CANDIDATE = "candidate"
TEXT_CAP = 2000


@dataclass
class EvalConfig:
    data_dir: Path
    fleet_path: Path
    adapter: Path
    out: Path
    champion: str | None = None  # default: the step's current first rung
    limit: int | None = None
    reuse_recorded: bool = True
    progress: bool = True
    # both rungs' own calibrated gates are compared at this certified accepted-wrong rate
    alpha: float = 0.05
    confidence: float = 0.95


@dataclass
class Outcome:
    """One rung on one example."""

    valid: bool
    accepted: bool
    correct: bool
    latency_s: float
    cost_usd: float
    reason: str | None
    text: str
    reused: bool = False
    # the gate's view of a contract-passing answer ({"numeric", "tool", "rung"}), so each
    # rung's own gate can be calibrated on the holdout; None when the answer failed its contract
    features: dict[str, Any] | None = None


@dataclass
class _Example:
    """One holdout input (lines of both views with the same input and contract are merged)."""

    key: str
    input: list[dict[str, Any]]
    tags: dict[str, str]
    meta: dict[str, Any]
    recorded: list[dict[str, Any]] = field(default_factory=list)  # first attempts of its recorded runs
    teacher_value: Any = None
    views: set[str] = field(default_factory=set)


def champion_rung(fleet: Fleet, step: str) -> Rung:
    """The rung the step tries first today."""
    policy = fleet.policy_for(step)
    rungs = [r for r in fleet.rungs if r.step in (None, step)]
    try:
        ordered = eligible_rungs(policy, rungs)
    except ValueError as exc:
        raise DistillError(f"{fleet.source}: {exc}") from exc
    if not ordered:
        raise DistillError(f"{fleet.source}: step {step!r} has no eligible rung")
    return ordered[0]


def base_rung_for(fleet: Fleet, champion: Rung) -> Rung:
    """The llamacpp rung whose base model the specialist sits on: the champion's, or the
    smallest plain llamacpp edge rung when the champion is not a local model."""
    local = [r for r in fleet.rungs if r.backend == "llamacpp" and r.adapter is None and r.step is None]
    if champion.backend == "llamacpp":
        if champion.adapter is None:
            return champion
        # the champion is itself a specialist: the new one goes on the same base model
        return next((r for r in local if r.path == champion.path), champion)
    if not local:
        raise DistillError(f"{fleet.source}: no llamacpp rung to put the specialist's adapter on")
    return sorted(local, key=lambda r: r.params)[0]


def candidate_rung(base: Rung, adapter: Path, step: str, name: str = CANDIDATE) -> Rung:
    return replace(base, name=name, adapter=str(Path(adapter).resolve()), step=step)


def single_rung_policy(policy: Policy, rung: str) -> Policy:
    """The step's gate, on one rung, one attempt."""
    return Policy(
        min_mean_logprob=policy.min_mean_logprob,
        min_token_logprob=policy.min_token_logprob,
        min_decision_logprob=policy.min_decision_logprob,
        first_rung=rung,
        max_attempts=1,
        accept_truncated=policy.accept_truncated,
    )


def _examples(data_dir: Path, manifest: dict[str, Any], limit: int | None) -> list[_Example]:
    by_key: dict[str, _Example] = {}
    views = [("teacher", HOLDOUT)]
    if HOLDOUT_INPUTS in manifest.get("files", {}):
        views.insert(0, ("inputs", HOLDOUT_INPUTS))
    for view, name in views:
        lines = read_jsonl(data_dir / name)
        if limit is not None:
            lines = lines[:limit]
        for line in lines:
            meta = line["metadata"]
            key = f"{meta.get('input_hash')}:{meta.get('contract_digest')}"
            ex = by_key.get(key)
            if ex is None:
                ex = by_key[key] = _Example(key, meta["input"], meta.get("tags", {}), meta)
            ex.views.add(view)
            if meta.get("first_attempt"):
                ex.recorded.append(
                    {**meta["first_attempt"], "contract_digest": meta.get("recorded_contract_digest")}
                )
            if view == "teacher":
                ex.meta = meta
                ex.teacher_value = line["messages"][-1]["content"]
    return list(by_key.values())


def _outcome(attempt: Attempt, accepted: bool, correct: bool, reused: bool) -> Outcome:
    from modelladder.learning.features import from_attempt

    v = attempt.verdict
    features = None
    if v is not None and v.ok and attempt.error is None and attempt.finish_reason != "length":
        row = from_attempt(attempt)  # what a gate decides on: a whole, contract-passing answer
        features = {"numeric": row.numeric, "tool": row.tool, "rung": row.rung}
    return Outcome(
        valid=bool(v is not None and v.ok),
        accepted=accepted,
        correct=correct,
        latency_s=attempt.latency_s,
        cost_usd=attempt.cost_usd,
        reason=None if accepted else (attempt.escalation_reason or judge(attempt, Policy()) or "rejected"),
        text=(attempt.text or "")[:TEXT_CAP],
        reused=reused,
        features=features,
    )


class Evaluator:
    """Runs (or re-judges) rungs on examples and scores them with the step source."""

    def __init__(
        self,
        fleet: Fleet,
        step: str,
        source: StepSource,
        policy: Policy,
        backends: Mapping[str, Backend] | None = None,
    ):
        self.fleet, self.step, self.source, self.policy = fleet, step, source, policy
        self.backends = dict(backends or {})  # by rung name; tests plug fakes in here
        self._ladders: dict[str, Ladder] = {}

    def step_for(self, ex: _Example) -> Step:
        return self.source.step_for(self.step, ex.input, ex.tags)

    def teacher_value(self, ex: _Example, step: Step) -> Any:
        if ex.teacher_value is None or step.contract is None:
            return ex.teacher_value
        verdict = step.contract.validate(ex.teacher_value, step.with_system(ex.input))
        return verdict.value if verdict.ok else None

    def _score(self, ex: _Example, step: Step, value: Any, valid: bool) -> bool:
        return valid and self.source.correct(ex.tags, value, self.teacher_value(ex, step))

    def run(self, rung: Rung, ex: _Example) -> Outcome:
        step = self.step_for(ex)
        ladder = self._ladders.get(rung.name)
        if ladder is None:
            fleet = Fleet([rung], {}, self.fleet.default_policy, self.fleet.source)
            given = {rung.name: self.backends[rung.name]} if rung.name in self.backends else None
            ladder = self._ladders[rung.name] = Ladder(fleet, store=None, backends=given)
        result = ladder.run(step, ex.input, policy=single_rung_policy(self.policy, rung.name))
        attempt = result.attempts[0]
        verdict = attempt.verdict
        valid = bool(verdict is not None and verdict.ok)
        value = verdict.value if verdict is not None and valid else None
        return _outcome(
            attempt, isinstance(result, Resolved), self._score(ex, step, value, valid), reused=False
        )

    def rejudge(self, rung: Rung, ex: _Example) -> Outcome | None:
        """The recorded first attempt, if it was this rung's on today's contract."""
        step = self.step_for(ex)
        digest = step.contract.digest() if step.contract is not None else None
        rec = next(
            (r for r in ex.recorded if r.get("rung") == rung.name and r.get("contract_digest") == digest),
            None,
        )
        if rec is None:
            return None
        attempt = Attempt(
            index=0,
            rung=rung.name,
            placement=rung.placement,
            text=rec.get("text") or "",
            latency_s=float(rec.get("latency_s") or 0.0),
            cost_usd=float(rec.get("cost_usd") or 0.0),
            finish_reason=rec.get("finish_reason"),
            error=rec.get("error"),
        )
        if rec.get("n_value_tokens") is not None:
            attempt.confidence = Confidence(
                rec.get("mean_logprob"), rec.get("min_logprob"), int(rec["n_value_tokens"])
            )
        if attempt.error is None:
            if step.contract is None:
                from modelladder.contracts import Verdict

                attempt.verdict = (
                    Verdict.passed(attempt.text) if attempt.text.strip() else Verdict.failed("empty_output")
                )
            else:
                attempt.verdict = step.contract.validate(attempt.text, step.with_system(ex.input))
        reason = judge(attempt, single_rung_policy(self.policy, rung.name))
        attempt.escalation_reason = reason
        verdict = attempt.verdict
        valid = bool(verdict is not None and verdict.ok)
        value = verdict.value if verdict is not None and valid else None
        return _outcome(attempt, reason is None, self._score(ex, step, value, valid), reused=True)


def _preflight(candidate: Rung) -> None:
    """Load the adapter on its base once, so a wrong file is one clear error, not n failed attempts."""
    from modelladder.backends import preload_backend
    from modelladder.backends.base import BackendError
    from modelladder.distill.export_gguf import validate_adapter
    from modelladder.fleet import FleetError

    try:
        base = candidate.resolve_path()
        validate_adapter(Path(str(candidate.adapter)), base)
        preload_backend(candidate)
    except (BackendError, FleetError, DistillError) as exc:
        raise DistillError(f"the candidate cannot run: {exc}") from exc


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def metrics(outs: list[Outcome], placement: str, escalation: dict[str, Any]) -> dict[str, Any]:
    n = len(outs)
    if n == 0:
        return {"n": 0}
    acc = sum(o.accepted for o in outs)
    correct = sum(o.correct for o in outs)
    acc_right = sum(o.accepted and o.correct for o in outs)
    esc = n - acc
    lat = [o.latency_s for o in outs]
    edge_first = placement == "edge"
    return {
        "n": n,
        "accuracy": correct / n,
        "validity": sum(o.valid for o in outs) / n,
        "gate_acceptance": acc / n,
        "accepted_wrong_rate": (acc - acc_right) / acc if acc else 0.0,
        "accepted_wrong_of_all": (acc - acc_right) / n,
        "escalation_rate": esc / n,
        "edge_share": ((acc if edge_first else 0) + esc * escalation["edge_share"]) / n,
        "latency_mean_s": statistics.fmean(lat),
        "latency_p50_s": _pct(lat, 0.5),
        "latency_p90_s": _pct(lat, 0.9),
        "cost_per_1k_steps_usd": 1000
        * (statistics.fmean(o.cost_usd for o in outs) + esc / n * escalation["cost_usd"]),
        "ladder_accuracy": (acc_right + esc * escalation["accuracy"]) / n,
        "counts": {
            "correct": correct,
            "valid": sum(o.valid for o in outs),
            "accepted": acc,
            "accepted_wrong": acc - acc_right,
            "reused_recorded": sum(o.reused for o in outs),
        },
    }


def escalation_profile(ev: Evaluator, examples: list[_Example]) -> dict[str, Any]:
    """What an escalated step costs and scores, from the recorded teacher answers."""
    teach = [e for e in examples if e.meta.get("teacher_attempt")]
    if not teach:
        return {"cost_usd": 0.0, "edge_share": 0.0, "accuracy": 1.0, "n": 0}
    costs = [float(e.meta["teacher_attempt"].get("cost_usd") or 0.0) for e in teach]
    edge = [e.meta["teacher_attempt"].get("placement") == "edge" for e in teach]
    right = []
    for e in teach:
        step = ev.step_for(e)
        value = ev.teacher_value(e, step)
        right.append(value is not None and ev.source.correct(e.tags, value, value))
    return {
        "cost_usd": statistics.fmean(costs),
        "edge_share": sum(edge) / len(edge),
        "accuracy": sum(right) / len(right),
        "n": len(teach),
    }


def evaluate(
    cfg: EvalConfig, *, backends: Mapping[str, Backend] | None = None, source: StepSource | None = None
) -> dict[str, Any]:
    """Evaluate and write ``cfg.out`` (JSON) plus ``<out>.details.jsonl``; returns the report.
    ``backends`` (by rung name; the candidate is ``"candidate"``) and ``source`` replace the real
    ones (tests)."""
    data_dir = Path(cfg.data_dir)
    manifest = load_manifest(data_dir)
    step = manifest["step"]
    snap = read_fleet(Path(cfg.fleet_path))
    if not Path(cfg.adapter).is_file():
        raise DistillError(f"adapter not found: {cfg.adapter}; train one with `modelladder distill train`")
    champion = snap.fleet.rung(cfg.champion) if cfg.champion else champion_rung(snap.fleet, step)
    base = base_rung_for(snap.fleet, champion)
    candidate = candidate_rung(base, Path(cfg.adapter), step)
    source = source or make_source(manifest.get("step_source"))
    policy = snap.fleet.policy_for(step)
    ev = Evaluator(snap.fleet, step, source, policy, backends)
    if CANDIDATE not in (backends or {}):
        _preflight(candidate)
    examples = _examples(data_dir, manifest, cfg.limit)
    if not examples:
        raise DistillError(f"the holdout of {data_dir} is empty; rebuild the dataset with more traces")
    escalation = escalation_profile(ev, examples)

    results: dict[str, dict[str, Outcome]] = {champion.name: {}, CANDIDATE: {}}
    progress = progress_bar("cand acc {task.fields[acc]}", enabled=cfg.progress)
    details_path = Path(str(cfg.out) + ".details.jsonl")
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    # Line-buffered: a long evaluation can be followed (and judged) while it runs.
    with progress, details_path.open("w", encoding="utf-8", buffering=1) as details:
        task = progress.add_task(f"distill eval {step}", total=len(examples), acc="-")
        right = 0
        for i, ex in enumerate(examples, 1):
            champ = ev.rejudge(champion, ex) if cfg.reuse_recorded else None
            champ = champ or ev.run(champion, ex)
            cand = ev.run(candidate, ex)
            results[champion.name][ex.key] = champ
            results[CANDIDATE][ex.key] = cand
            right += cand.correct
            details.write(
                json.dumps(
                    {
                        "run_id": ex.meta["run_id"],
                        "views": sorted(ex.views),
                        "tags": ex.tags,
                        "champion": asdict(champ),
                        "candidate": asdict(cand),
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
            progress.update(task, advance=1, acc=f"{right / i:.1%}")

    views: dict[str, Any] = {}
    for view in ("inputs", "teacher"):
        ids = [e.key for e in examples if view in e.views]
        if not ids:
            continue
        views[view] = {
            "n": len(ids),
            "champion": metrics([results[champion.name][i] for i in ids], champion.placement, escalation),
            "candidate": metrics([results[CANDIDATE][i] for i in ids], candidate.placement, escalation),
        }
    from modelladder.distill.certified import compare_certified

    primary = "inputs" if "inputs" in views else "teacher"
    certified = compare_certified(
        results[champion.name], results[CANDIDATE], alpha=cfg.alpha, confidence=cfg.confidence,
        escalation=escalation, keys=[e.key for e in examples if primary in e.views],
    )  # fmt: skip
    report = {
        "format_version": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "step": step,
        "dataset": {
            "dir": str(data_dir.resolve()),
            "manifest_sha256": file_sha256(data_dir / "manifest.json"),
            "contract_digest": manifest.get("contract_digest"),
        },
        "fleet": {"path": str(Path(cfg.fleet_path).resolve()), "digest": snap.digest},
        "reference": source.reference_name,
        "champion": {
            "rung": champion.name,
            "placement": champion.placement,
            "reused_recorded_attempts": cfg.reuse_recorded,
        },
        "candidate": {
            "adapter": str(Path(cfg.adapter).resolve()),
            "adapter_sha256": file_sha256(Path(cfg.adapter)),
            "base_rung": base.name,
            "rung": {k: v for k, v in asdict(candidate).items() if v is not None},
        },
        "policy": asdict(policy),
        "escalation": escalation,
        "primary_view": primary,
        "views": views,
        "certified": certified,
        "details": str(details_path),
    }
    tmp = Path(cfg.out).with_name(f".{Path(cfg.out).name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, cfg.out)
    return report


def load_eval(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise DistillError(f"no evaluation at {path}; run `modelladder distill eval` first") from exc
    except ValueError as exc:
        raise DistillError(f"{path} is not valid JSON ({exc}); run the evaluation again") from exc
    if report.get("format_version") != 1 or "views" not in report:
        raise DistillError(f"{path} is not a `distill eval` report")
    return report


def report_digest(report: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(report, sort_keys=True).encode()).hexdigest()[:16]
