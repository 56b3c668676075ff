"""``distill dataset``: traces of one step -> chat-format JSONL (train / holdout) + a manifest.

Selection. A run is a training example when its accepted answer came from a rung *above
the first rung tried* (the teacher: the small model failed and a bigger one answered), or
from one of ``teacher_rungs`` when given; runs with negative feedback are left out. Each
teacher answer is validated again with the step's contract as it is *today* (rebuilt by a
:mod:`step source <modelladder.distill.steps>`): answers that fail it are dropped and
counted, so a tightened contract never trains the old behaviour back in.

Split. Train/holdout is decided by a hash of the normalised input alone -- not the contract,
the run id or the redaction settings -- so a later rebuild with more traces never moves an
example across the split. Near-identical inputs (same contract, word-shingle Jaccard above
the threshold) are kept once, the oldest first, which also keeps near-copies of a training
input out of the holdout.

Files (``out_dir``): ``train.jsonl`` and ``holdout.jsonl`` (``{"messages": [...], "metadata":
{...}}``: the prompt messages exactly as the ladder prepares them -- the contract's
instructions merged into the system message -- then the teacher's canonical answer);
``holdout_inputs.jsonl`` when the step has an external checker (every input of the holdout
half, escalated or not: the distribution the first rung really sees); ``manifest.json``.

Prompt budget. ``max_prompt_tokens`` shortens *training* prompts of tool-call steps by
leaving out tools the answer does not call (largest first) until the prompt fits: the
format stays the run-time format, only the tool list is shorter. Holdout prompts are never
shortened; evaluation runs the real contract.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelladder.backends.prompting import prepare_messages
from modelladder.contracts import ToolCalls
from modelladder.contracts.tools import render_calls
from modelladder.distill.dedup import SPLIT_SALT, NearDupIndex, input_text, normalise, split_of
from modelladder.distill.errors import DistillError
from modelladder.distill.redact import Redactor
from modelladder.distill.steps import StepSource, make_source
from modelladder.ladder import Step
from modelladder.traces import AttemptRecord, RunRecord, TraceStore, TraceStoreError
from modelladder.traces.paths import redact_url

__all__ = ["DatasetConfig", "FORMAT_VERSION", "MANIFEST", "build_dataset", "load_manifest", "read_jsonl"]

MANIFEST = "manifest.json"
TRAIN, HOLDOUT, HOLDOUT_INPUTS = "train.jsonl", "holdout.jsonl", "holdout_inputs.jsonl"
FORMAT_VERSION = 1


@dataclass
class DatasetConfig:
    """One ``distill dataset`` build. ``holdout`` is the share of inputs held out (by hash);
    ``dedup_threshold`` 1.0 removes exact duplicates (after normalisation) only."""

    step: str
    out_dir: Path
    db: Path | str | None = None  # a SQLite file or a postgresql:// URL
    tags: dict[str, str] = field(default_factory=dict)
    teacher_rungs: tuple[str, ...] = ()
    holdout: float = 0.2
    dedup_threshold: float = 0.9
    redact_emails: bool = False
    redact_phones: bool = False
    redact_patterns: tuple[str, ...] = ()
    max_prompt_tokens: int | None = None
    base_gguf: Path | None = None  # tokenizer + chat template for max_prompt_tokens
    prompt_format: str = "chat_template"
    step_def: str | None = None
    min_train: int = 8
    min_holdout: int = 1

    def check(self) -> None:
        if not 0 < self.holdout < 1:
            raise DistillError(f"--holdout must be a share strictly between 0 and 1, not {self.holdout}")
        if not 0 < self.dedup_threshold <= 1:
            raise DistillError(f"--dedup-threshold must be within (0, 1], not {self.dedup_threshold}")
        if self.max_prompt_tokens is not None and (self.max_prompt_tokens < 16 or self.base_gguf is None):
            raise DistillError("--max-prompt-tokens needs a value >= 16 and the base model (its tokenizer)")
        if self.min_train < 1 or self.min_holdout < 1:
            raise DistillError("--min-train and --min-holdout must be at least 1")


# --------------------------------------------------------------------------- building


@dataclass
class _Candidate:
    run: RunRecord
    key: str
    split: str
    step: Step | None = None
    answer: str | None = None
    value: Any = None
    input: list[dict[str, Any]] = field(default_factory=list)
    prepared: list[dict[str, Any]] = field(default_factory=list)
    shortened_from: int | None = None  # number of tools before shortening


def _is_teacher(run: RunRecord, teacher_rungs: tuple[str, ...]) -> bool:
    accepted = run.accepted
    if not run.resolved or accepted is None or not run.attempts:
        return False
    if teacher_rungs:
        return accepted.rung in teacher_rungs
    return accepted.rung != run.attempts[0].rung


def _canonical_answer(step: Step, text: str, value: Any) -> str:
    """Tool calls in the one canonical layout the ladder's contracts define; others as given."""
    if isinstance(step.contract, ToolCalls) and isinstance(value, list):
        return render_calls(value)
    return text


def _metadata(c: _Candidate, cfg: DatasetConfig, teacher: bool, redactor: Redactor) -> dict[str, Any]:
    run = c.run
    meta: dict[str, Any] = {
        "run_id": run.run_id,
        "created_at": run.created_at.isoformat(),
        "step": cfg.step,
        "split": c.split,
        "input_hash": hashlib.sha256(c.key.encode()).hexdigest()[:16],
        "tags": run.tags,
        "recorded_contract_digest": run.contract_digest,
        "contract_digest": c.step.contract.digest() if c.step and c.step.contract else None,
        "teacher": teacher,
        "teacher_rung": run.accepted.rung if teacher and run.accepted else None,
        "first_rung": run.attempts[0].rung if run.attempts else None,
        "input": c.input,
    }
    if run.attempts:
        meta["first_attempt"] = _attempt_meta(run.attempts[0], redactor)
    if teacher and run.accepted is not None:
        a = run.accepted
        meta["teacher_attempt"] = {
            "rung": a.rung,
            "placement": a.placement,
            "cost_usd": a.cost_usd,
            "latency_s": a.latency_s,
        }
    if c.shortened_from is not None:
        meta["tools_shortened_from"] = c.shortened_from
    return meta


def _attempt_meta(a: AttemptRecord, redactor: Redactor) -> dict[str, Any]:
    """What evaluation needs to re-judge a recorded attempt without running it again."""
    return {
        "rung": a.rung,
        "placement": a.placement,
        "text": redactor.text(a.text or ""),
        "mean_logprob": a.mean_logprob,
        "min_logprob": a.min_logprob,
        "n_value_tokens": a.n_value_tokens,
        "latency_s": a.latency_s,
        "cost_usd": a.cost_usd,
        "finish_reason": a.finish_reason,
        "error": a.error,
        "prompt_tokens": a.prompt_tokens,
        "completion_tokens": a.completion_tokens,
    }


def _shorten(c: _Candidate, fmt: Any, budget: int) -> bool:
    """Leave out uncalled tools (largest first) until the prompt fits ``budget`` tokens."""
    assert c.step is not None
    contract = c.step.contract
    if len(fmt.prompt_ids(c.prepared)) <= budget:
        return True
    if not isinstance(contract, ToolCalls) or not isinstance(c.value, list):
        return False
    called = {call["name"] for call in c.value}
    tools = list(contract.tools)
    spare = sorted(
        (t for t in tools if t["name"] not in called), key=lambda t: len(json.dumps(t)), reverse=True
    )
    if not spare:
        return False
    c.shortened_from = len(tools)
    for drop in spare:
        tools = [t for t in tools if t["name"] != drop["name"]]
        smaller = ToolCalls(
            tools,
            parallel=contract.parallel,
            allow_no_call=contract.allow_no_call,
            tool_choice=contract.tool_choice,
        )
        c.prepared = prepare_messages(c.step.with_system(c.input), smaller)
        if len(fmt.prompt_ids(c.prepared)) <= budget:
            return True
    return False


def _write_jsonl(path: Path, lines: Iterable[dict[str, Any]]) -> tuple[int, str]:
    """Write atomically (temp file + rename); returns (lines, sha256)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for line in lines:
            data = json.dumps(line, ensure_ascii=False) + "\n"
            fh.write(data)
            h.update(data.encode("utf-8"))
            n += 1
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return n, h.hexdigest()


def _combined_digest(digests: Iterable[str | None]) -> tuple[str | None, int]:
    uniq = sorted({d for d in digests if d})
    if len(uniq) <= 1:
        return (uniq[0] if uniq else None), len(uniq)
    return "set:" + hashlib.sha256("\n".join(uniq).encode()).hexdigest()[:16], len(uniq)


def build_dataset(
    cfg: DatasetConfig, *, store: TraceStore | None = None, source: StepSource | None = None, fmt: Any = None
) -> dict[str, Any]:
    """Build the dataset and return its manifest. Raises :class:`DistillError` on bad input."""
    cfg.check()
    own_store = store is None
    if store is None:
        try:
            store = TraceStore(cfg.db, create=False)
        except TraceStoreError as exc:
            raise DistillError(str(exc)) from exc
    try:
        return _build(cfg, store, source, fmt)
    finally:
        if own_store:
            store.close()


def _build(cfg: DatasetConfig, store: TraceStore, source: StepSource | None, fmt: Any) -> dict[str, Any]:
    summaries = list(reversed(store.list_runs(limit=None, step=cfg.step)))  # oldest first
    counts: dict[str, int] = {"runs_of_step": len(summaries)}
    summaries = [s for s in summaries if all(s.tags.get(k) == v for k, v in cfg.tags.items())]
    counts["runs_matching_tags"] = len(summaries)
    if not summaries:
        where = f" with tags {cfg.tags}" if cfg.tags else ""
        raise DistillError(f"no runs of step {cfg.step!r}{where} in the trace store {store.path}")
    source = source or make_source(cfg.step_def, [s.tags for s in summaries[:20]])
    redactor = Redactor(cfg.redact_emails, cfg.redact_phones, tuple(cfg.redact_patterns))
    for k in (
        "unresolved",
        "failed_feedback",
        "first_rung_accepted",
        "teacher_answers",
        "step_unavailable",
        "teacher_fails_contract_today",
        "redaction_breaks_contract",
        "near_duplicates",
        "shortened_prompts",
        "over_budget_kept",
    ):
        counts[k] = 0

    teachers: list[_Candidate] = []
    inputs: list[_Candidate] = []  # holdout-half inputs, for steps with an external checker
    newest = None
    for s in summaries:
        run = store.get_run(s.run_id)
        newest = run.created_at.isoformat()
        key = normalise(input_text(run.messages))
        c = _Candidate(run=run, key=key, split=split_of(key, cfg.holdout))
        teacher = _is_teacher(run, cfg.teacher_rungs)
        if not run.resolved:
            counts["unresolved"] += 1
        elif run.feedback_success is False:
            counts["failed_feedback"] += 1
            teacher = False
        elif not teacher:
            counts["first_rung_accepted"] += 1
        want_input = source.has_checker() and c.split == "holdout"
        if not teacher and not want_input:
            continue
        try:
            c.step = source.step_for(cfg.step, run.messages, run.tags)
        except DistillError:
            counts["step_unavailable"] += 1
            continue
        c.input = redactor.messages(run.messages)
        if teacher:
            counts["teacher_answers"] += 1
            if _accept_teacher(c, redactor, counts):
                teachers.append(c)
        if want_input:
            inputs.append(c)

    if counts["teacher_answers"] == 0:
        raise DistillError(
            f"step {cfg.step!r} has no teacher answers: none of its {len(summaries)} run(s) was answered by a "
            "rung above the first rung tried"
            + (f" or by {list(cfg.teacher_rungs)}" if cfg.teacher_rungs else "")
        )

    def bucket(c: _Candidate) -> str:
        return c.step.contract.digest() if c.step and c.step.contract else ""

    index = NearDupIndex(cfg.dedup_threshold)
    kept: list[_Candidate] = []
    for c in teachers:
        if index.seen(bucket(c), c.key):
            counts["near_duplicates"] += 1
            continue
        index.add(bucket(c), c.key)
        kept.append(c)
    train = [c for c in kept if c.split == "train"]
    holdout = [c for c in kept if c.split == "holdout"]
    # The inputs view: each holdout input once (its oldest run: the one the first rung answered),
    # never a near-copy of a training input.
    seen_in_train = NearDupIndex(cfg.dedup_threshold)
    for c in train:
        seen_in_train.add(bucket(c), c.key)
    seen_input = NearDupIndex(cfg.dedup_threshold)
    held_ids = {c.run.run_id for c in holdout}
    inputs_kept: list[_Candidate] = []
    for c in inputs:
        if seen_in_train.seen(bucket(c), c.key) or seen_input.seen(bucket(c), c.key):
            continue
        seen_input.add(bucket(c), c.key)
        if c.run.run_id not in held_ids:
            c.answer = None  # not a kept teacher example: no reference answer on this line
        inputs_kept.append(c)

    if len(train) < cfg.min_train:
        raise DistillError(
            f"too few training examples for step {cfg.step!r}: {len(train)} in the train split, at least "
            f"{cfg.min_train} needed ({len(kept)} teacher answers after filtering; counts: {counts})"
        )
    if len(holdout) < cfg.min_holdout:
        raise DistillError(
            f"the holdout split of step {cfg.step!r} is empty ({len(holdout)} examples, at least {cfg.min_holdout} "
            f"needed); record more traces or raise --holdout (now {cfg.holdout})"
        )

    if cfg.max_prompt_tokens is not None:
        if fmt is None:
            from modelladder.distill.prompt import PromptFormat

            fmt = PromptFormat(Path(cfg.base_gguf), cfg.prompt_format)  # type: ignore[arg-type]
        for c in train:
            before = c.shortened_from
            if not _shorten(c, fmt, cfg.max_prompt_tokens):
                counts["over_budget_kept"] += 1
            if c.shortened_from is not None and before is None:
                counts["shortened_prompts"] += 1

    return _write(
        cfg, source, redactor, counts, train, holdout, inputs_kept if source.has_checker() else None, newest
    )


def _accept_teacher(c: _Candidate, redactor: Redactor, counts: dict[str, int]) -> bool:
    """Validate the teacher answer with today's contract (before and after redaction)."""
    assert c.step is not None
    run = c.run
    text = run.text or ""
    if c.step.contract is not None:
        verdict = c.step.contract.validate(text, c.step.with_system(run.messages))
        if not verdict.ok:
            counts["teacher_fails_contract_today"] += 1
            return False
        value = verdict.value
    else:
        value = text
    if redactor.active:
        text = redactor.text(text)
        value = redactor.value(value)
        if c.step.contract is not None:
            verdict = c.step.contract.validate(text, c.step.with_system(c.input))
            if not verdict.ok:
                counts["redaction_breaks_contract"] += 1
                return False
            value = verdict.value
    c.value = value
    c.answer = _canonical_answer(c.step, text, value)
    c.prepared = prepare_messages(c.step.with_system(c.input), c.step.contract)
    return True


def _write(
    cfg: DatasetConfig,
    source: StepSource,
    redactor: Redactor,
    counts: dict[str, int],
    train: list[_Candidate],
    holdout: list[_Candidate],
    inputs: list[_Candidate] | None,
    newest: str | None,
) -> dict[str, Any]:
    out = cfg.out_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DistillError(f"cannot create the dataset directory {out}: {exc.strerror or exc}") from exc

    def chat(cs: list[_Candidate]) -> Iterable[dict[str, Any]]:
        for c in cs:
            msgs = [*c.prepared, {"role": "assistant", "content": c.answer}]
            yield {"messages": msgs, "metadata": _metadata(c, cfg, teacher=True, redactor=redactor)}

    files: dict[str, dict[str, Any]] = {}
    for name, cs in ((TRAIN, train), (HOLDOUT, holdout)):
        n, digest = _write_jsonl(out / name, chat(cs))
        files[name] = {"lines": n, "sha256": digest}
    if inputs is not None:
        lines = (
            {
                "messages": c.input,
                "metadata": _metadata(c, cfg, teacher=c.answer is not None, redactor=redactor),
            }
            for c in inputs
        )
        n, digest = _write_jsonl(out / HOLDOUT_INPUTS, lines)
        files[HOLDOUT_INPUTS] = {"lines": n, "sha256": digest}
    elif (out / HOLDOUT_INPUTS).exists():
        (out / HOLDOUT_INPUTS).unlink()

    counts.update({"train": len(train), "holdout": len(holdout), "holdout_inputs": len(inputs or [])})
    combined, n_contracts = _combined_digest(
        c.step.contract.digest() if c.step and c.step.contract else None for c in [*train, *holdout]
    )
    manifest = {
        "format_version": FORMAT_VERSION,
        "step": cfg.step,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "trace_store": redact_url(str(cfg.db)) if cfg.db else None,  # never a password
        "newest_run_considered": newest,
        "step_source": source.spec,
        "reference": source.reference_name,
        "filters": {
            "tags": dict(cfg.tags),
            "teacher": list(cfg.teacher_rungs) or "accepted rung above the first rung tried",
            "exclude_failed_feedback": True,
            "contract_checked_today": True,
            "dedup_threshold": cfg.dedup_threshold,
            "redaction": redactor.describe(),
            "holdout_share": cfg.holdout,
            "split": f"sha256({SPLIT_SALT!r} + normalised input) < holdout share",
            "max_prompt_tokens": cfg.max_prompt_tokens,
            "base_gguf": str(cfg.base_gguf) if cfg.base_gguf else None,
            "prompt_format": cfg.prompt_format,
        },
        "counts": counts,
        "contract_digest": combined,
        "contracts": n_contracts,
        "source_run_ids": {
            "train": [c.run.run_id for c in train],
            "holdout": [c.run.run_id for c in holdout],
            **({"holdout_inputs": [c.run.run_id for c in inputs]} if inputs is not None else {}),
        },
        "files": files,
    }
    tmp = out / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, out / MANIFEST)
    return manifest


# --------------------------------------------------------------------------- reading


def load_manifest(data_dir: Path) -> dict[str, Any]:
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise DistillError(
            f"no dataset at {data_dir} ({MANIFEST} missing); build one with `modelladder distill dataset`"
        )
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise DistillError(f"{path} is not valid JSON ({exc}); rebuild the dataset") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DistillError(
            f"{path}: dataset format {manifest.get('format_version')!r} is not {FORMAT_VERSION}; rebuild it"
        )
    return manifest


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DistillError(f"{path} is missing; rebuild the dataset")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as exc:
            raise DistillError(f"{path}:{i} is not valid JSON ({exc}); rebuild the dataset") from exc
    return out
