"""``modelladder bench bfcl``: run BFCL items through one rung or the ladder, score, record.

Modes:

* ``rung:<name>`` -- every item on that rung alone, confidence gate off: the per-model
  leaderboard row. (The contract still applies: an output that does not parse is a failed
  item, recorded with its reason.)
* ``ladder`` -- every item through the ladder as configured (the fleet's policy). With
  ``sweep_gate`` every rung of the ladder answers every item once instead, and the ladder's
  decision is replayed (:mod:`modelladder.bench.sweep`): the configured policy gives the
  main results, a grid of thresholds gives the cost-quality curve, and single-rung rows
  come for free.

The step for an item is ``ToolCalls(item.tools, parallel=item.parallel, allow_no_call=True)``
in every category. ``allow_no_call=True`` everywhere because whether a request can be served
by the tools at hand is exactly what the irrelevance categories test: forcing a call on the
AST categories (``allow_no_call=False``) would hand the model the answer key's category and
make a decline impossible there, while a real agent step does not know in advance whether
its request is answerable. It is also what BFCL's own prompt does (declining is allowed in
every category). ``parallel`` follows BFCL's category (several calls allowed only in the
``parallel*`` categories), as BFCL's function-calling handlers do.

Results go to ``results.jsonl`` one line per item, written and flushed as soon as the item
is scored, so an interrupted run loses at most the item in flight; a rerun with the same
``--out`` skips every id already there. ``run.json`` pins the mode and fleet of the run so
a resume cannot mix two configurations.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelladder._progress import progress_bar
from modelladder.backends.base import Backend, BackendError
from modelladder.bench.bfcl.data import BfclItem, load_items
from modelladder.bench.bfcl.step import STEP_NAME, make_step
from modelladder.bench.config import (
    BenchConfig,
    BenchInputError,
    PreparedFleet,
    check_out_dir,
    fleet_digest,
    load_bench_fleet,
    parse_categories,
    parse_mode,
    prepare_fleet,
    rung_problem,
)
from modelladder.bench.results import (
    RESULTS,
    ResultsWriter,
    attempt_record,
    base_record,
    error_record,
    load_reusable,
    open_run,
    read_results,
    result_record,
    score_result,
)
from modelladder.bench.summary import summarize_by_category
from modelladder.bench.sweep import attempt_from_stored, ladder_rungs, replay_item, single_rung_policy, sweep
from modelladder.ladder import Ladder, Policy, Resolved, Step, Unresolved, judge

__all__ = [
    "BenchConfig", "BenchInputError", "BenchOutcome", "BfclRunner", "PreparedFleet", "build_summary",
    "check_out_dir", "load_bench_fleet", "load_reusable", "make_step", "parse_categories", "parse_mode",
    "prepare_fleet", "read_results", "result_record", "rung_problem", "run_bench",
]  # fmt: skip

SUMMARY = "summary.json"
REPORT = "report.html"

REFERENCE_LABEL = (
    "reference = the benchmark's own accepted answer (an oracle standing in for a frontier model; "
    "its latency and price come from the fleet file). Not a model: no figure that includes it is a model's accuracy."
)


# --------------------------------------------------------------------------- the run


@dataclass
class BenchOutcome:
    out_dir: Path
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    ran: int
    skipped: int
    reused: int = 0


class _Traces:
    """The trace store, written after each run; a failing store warns once, never stops the bench."""

    def __init__(self, store: Any | None, warn: Callable[[str], None]):
        self.store = store
        self._warn = warn
        self._warned = False

    def record(self, result: Resolved | Unresolved) -> None:
        if self.store is None:
            return
        try:
            self.store.record(result)
        except Exception as exc:
            self._failed(exc)

    def label(self, run_id: str, attempt_idx: int, ok: bool) -> None:
        """The benchmark's checker verdict on an accepted answer, as a ``correct`` label."""
        if self.store is None:
            return
        try:
            self.store.add_label(run_id, attempt_idx=attempt_idx, kind="correct", value=float(ok),
                                 source="checker", note="bench")  # fmt: skip
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        if not self._warned:
            self._warn(f"warning: could not write traces ({exc}); results.jsonl is still complete")
            self._warned = True


class BfclRunner:
    """Runs the items of one configuration. ``backends`` plugs in backends by rung name
    (tests); ``reference`` rungs get a :class:`ReferenceBackend` unless given one."""

    def __init__(
        self,
        prepared: PreparedFleet,
        mode: str,
        *,
        sweep_gate: bool = False,
        backends: Mapping[str, Backend] | None = None,
        traces: _Traces | None = None,
        run_name: str = "",
        reuse: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
        shaping: Any = None,
    ):
        from modelladder.bench.bfcl.reference import ReferenceBackend

        self.prepared = prepared
        self.mode = mode
        self.kind, self.rung_name = parse_mode(mode)
        self.sweep_gate = sweep_gate and self.kind == "ladder"
        self.run_name = run_name
        self.reuse = dict(reuse or {})
        self.reused = 0
        self.traces = traces or _Traces(None, print)
        given = dict(backends or {})
        self.references: list[ReferenceBackend] = []
        for r in prepared.fleet.rungs:
            if r.backend == "reference":
                b = given.get(r.name)
                if b is None:
                    b = ReferenceBackend.from_rung(r)
                    given[r.name] = b
                if isinstance(b, ReferenceBackend):
                    self.references.append(b)
        self.shaping = shaping  # bench.retrieval.BenchShaping, or None
        self.ladder = Ladder(prepared.fleet, store=None, backends=given,
                             shaper=shaping.shaper if shaping is not None else None)  # fmt: skip
        self.policy = prepared.policy
        if shaping is not None:
            self.policy = self.policy.merged(examples_k=shaping.info["examples_k"] or None,
                                             max_tools=shaping.info["max_tools"],
                                             history_budget_tokens=shaping.info["history_budget_tokens"])  # fmt: skip
        # rung mode: that rung only (the fleet's own max_rung/first_rung may name rungs left out)
        self.climb = (
            ladder_rungs(self.policy, prepared.fleet.rungs)
            if self.kind == "ladder"
            else list(prepared.fleet.rungs)
        )

    def register(self, items: Sequence[BfclItem]) -> None:
        for ref in self.references:
            ref.register(items)

    @contextmanager
    def _focus(self, item: BfclItem) -> Iterator[None]:
        with ExitStack() as stack:
            for ref in self.references:
                stack.enter_context(ref.focus(item.id))
            yield

    def _tags(self, item: BfclItem, **extra: str) -> dict[str, str]:
        return {
            "bench": "bfcl",
            "bench_run": self.run_name,
            "item": item.id,
            "category": item.category,
            "mode": self.mode,
            **extra,
        }

    def run_item(self, item: BfclItem) -> dict[str, Any]:
        """Run, score and describe one item. Model failures are results; anything else the
        harness hits becomes an ``error`` record -- never an exception (except interrupts)."""
        if self.shaping is not None:
            self.shaping.current_item = item.id
        try:
            step = make_step(item)
            with self._focus(item):
                if self.kind == "rung":
                    pol = single_rung_policy(self.policy, self.rung_name or "")
                    res = self.ladder.run(step, item.messages, policy=pol, tags=self._tags(item))
                    self.traces.record(res)
                    return self._labelled(res, result_record(item, res, self.mode, ladder=False))
                if not self.sweep_gate:
                    res = self.ladder.run(step, item.messages, policy=self.policy, tags=self._tags(item))
                    self.traces.record(res)
                    return self._labelled(res, result_record(item, res, self.mode, ladder=True))
                return self._sweep_item(item, step)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            return error_record(item, self.mode, exc)

    def _labelled(self, res: Resolved | Unresolved, rec: dict[str, Any]) -> dict[str, Any]:
        """The AST checker's verdict on the accepted answer, as the trace's ``correct`` label:
        what retrieved examples (``--examples-from``) and the gate learn from."""
        if isinstance(res, Resolved):
            self.traces.label(res.run_id, res.accepted.index, bool(rec.get("ast_valid")))
        return rec

    @staticmethod
    def _rescored(item: BfclItem, cached: Mapping[str, Any]) -> dict[str, Any]:
        """A reused generation, scored again with this run's checker (it is cheap, and keeps
        every AST result in one run from one scorer)."""
        from modelladder.bench.bfcl.score import score

        stored = {k: v for k, v in cached.items() if k not in ("accepted", "escalation_reason")}
        stored["reused"] = True
        # accepted exactly when the ladder's own judge, gate off, accepts it (as in a fresh run)
        why = judge(attempt_from_stored(stored, 0), Policy())
        if why is None and stored.get("calls") is not None:
            sc = score(item, stored["calls"])
            stored.update(ast_valid=sc.valid, ast_error=sc.error or None, ast_error_type=sc.error_type)
        else:
            why = why or "no_value"
            stored.update(
                calls=None,
                ast_valid=False,
                ast_error=f"no accepted answer: {why}",
                ast_error_type=f"unresolved:{why}",
            )
        return stored

    def _sweep_item(self, item: BfclItem, step: Step) -> dict[str, Any]:
        """Every rung of the ladder once (gate off), then the configured decision replayed."""
        per_rung: dict[str, dict[str, Any]] = {}
        run_ids: list[str] = []
        for r in self.climb:
            cached = self.reuse.get((item.id, r.name))
            if cached is not None:
                per_rung[r.name] = self._rescored(item, cached)
                self.reused += 1
                continue
            pol = single_rung_policy(self.policy, r.name)
            res = self.ladder.run(
                step, item.messages, policy=pol, tags=self._tags(item, rung=r.name, sweep="1")
            )
            self.traces.record(res)
            run_ids.append(res.run_id)
            if not res.attempts:  # cannot happen with one eligible rung; be explicit anyway
                raise BackendError("internal", f"rung {r.name} made no attempt")
            stored = attempt_record(res.attempts[-1])
            scored = score_result(item, res)
            self._labelled(res, scored)
            stored.update({k: scored[k] for k in ("calls", "ast_valid", "ast_error", "ast_error_type")})
            per_rung[r.name] = stored
        rec = base_record(item, self.mode)
        rec["rungs"] = per_rung
        decision = replay_item(rec, self.prepared.fleet.rungs, self.policy)
        chosen = per_rung.get(decision["rung"]) if decision["rung"] else None
        attempts = []
        for i, name in enumerate(decision["chain"]):
            a = dict(per_rung[name])
            a["accepted"] = chosen is not None and i == len(decision["chain"]) - 1
            a["escalation_reason"] = None if a["accepted"] else decision["escalations"][i]
            for k in ("calls", "ast_valid", "ast_error", "ast_error_type"):
                a.pop(k, None)
            attempts.append(a)
        rec.update(
            {
                "outcome": decision["outcome"],
                "reason": decision["reason"],
                "rung": decision["rung"],
                "placement": decision["placement"],
                "calls": chosen["calls"] if chosen else None,
                "ast_valid": decision["ast_valid"],
                "ast_error": chosen["ast_error"] if chosen else "no accepted answer",
                "ast_error_type": chosen["ast_error_type"] if chosen else f"unresolved:{decision['reason']}",
                "latency_s": decision["latency_s"],
                "prompt_tokens": sum(per_rung[n]["prompt_tokens"] for n in decision["chain"]),
                "completion_tokens": sum(per_rung[n]["completion_tokens"] for n in decision["chain"]),
                "cost_usd": decision["cost_usd"],
                "escalations": decision["escalations"],
                "accepted_wrong": decision["accepted_wrong"],
                "attempts": attempts,
                "run_ids": run_ids,
            }
        )
        # keep "rungs" last: it is the sweep's raw material, not the ladder's answer
        rec["rungs"] = rec.pop("rungs")
        return rec


# --------------------------------------------------------------------------- orchestration


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _bfcl_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bfcl-eval")
    except PackageNotFoundError:
        return None


def _run_file(out_dir: Path, cfg: BenchConfig, prepared: PreparedFleet) -> dict[str, Any]:
    """Create or check ``run.json``: a resumed run must use the same mode and fleet."""
    from modelladder.bench.retrieval import run_fields

    wanted = {"mode": cfg.mode, "sweep_gate": bool(cfg.sweep_gate), "fleet_digest": fleet_digest(prepared),
              **run_fields(cfg)}  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return open_run(out_dir, wanted, {
        "name": f"bfcl-{out_dir.resolve().name}-{stamp}",
        "bench": "bfcl",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **wanted,
        "fleet_source": prepared.fleet.source,
        "rungs": [asdict(r) for r in prepared.fleet.rungs],
        "policy": asdict(prepared.policy),
    })  # fmt: skip


def select_items(categories: Sequence[str], limit: int | None) -> list[BfclItem]:
    """The first ``limit`` items of each category, interleaved (item 0 of each category, then
    item 1...), so a run that is stopped early holds a balanced sample of every category."""
    per_cat = [load_items(c, limit) for c in categories]
    items: list[BfclItem] = []
    for i in range(max((len(x) for x in per_cat), default=0)):
        items.extend(x[i] for x in per_cat if i < len(x))
    return items


def build_summary(
    cfg: BenchConfig,
    run: Mapping[str, Any],
    prepared: PreparedFleet,
    records: Sequence[Mapping[str, Any]],
    wanted: int,
) -> dict[str, Any]:
    """summary.json: per category and overall figures, the fleet, labels and the sweep."""
    kind, _ = parse_mode(cfg.mode)
    ladder = kind == "ladder"
    figures = summarize_by_category(records, ladder=ladder, categories=cfg.categories)
    rungs = []
    for r in prepared.fleet.rungs:
        rungs.append(
            {
                "name": r.name,
                "backend": r.backend,
                "placement": r.placement,
                "params": r.params,
                "price_per_second": r.price_per_second,
                "price_in_per_m": r.price_in_per_m,
                "price_out_per_m": r.price_out_per_m,
                "latency_s": r.latency_s,
                "source": r.source,
                "is_reference": r.backend == "reference",
            }
        )
    summary: dict[str, Any] = {
        "benchmark": "BFCL v4",
        "bfcl_eval": _bfcl_version(),
        "run": run.get("name"),
        "mode": cfg.mode,
        "sweep_gate": bool(cfg.sweep_gate),
        "categories_requested": list(cfg.categories),
        "limit": cfg.limit,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "fleet": {"source": prepared.fleet.source, "rungs": rungs, "policy": asdict(prepared.policy)},
        "notes": list(prepared.notes),
        "complete": len(records) == wanted,
        "items_expected": wanted,
        "labels": {"reference": REFERENCE_LABEL} if any(r["is_reference"] for r in rungs) else {},
        **figures,
        "sweep": None,
    }
    if ladder and cfg.sweep_gate:
        sweepable = [r for r in records if r.get("rungs")]
        if sweepable:
            summary["sweep"] = sweep(
                sweepable, prepared.fleet.rungs, prepared.policy, target=cfg.target, categories=cfg.categories
            )
    return summary


def run_bench(
    cfg: BenchConfig,
    *,
    backends: Mapping[str, Backend] | None = None,
    console: Any | None = None,
    stop_after: int | None = None,
) -> BenchOutcome:
    """The whole command: validate input, run what is missing, write summary and report.

    ``stop_after`` runs at most that many new items and returns (a test hook for resume).
    Raises :class:`BenchInputError` for bad input; never for a model's output.
    """
    from rich.console import Console

    con = console or Console(stderr=True, highlight=False)
    import importlib.util

    if importlib.util.find_spec("bfcl_eval") is None:
        raise BenchInputError(
            "the BFCL data is missing: pip install 'modelladder[bench]' (bfcl-eval, installed with --no-deps)"
        )
    if cfg.limit is not None and cfg.limit <= 0:
        raise BenchInputError(f"--limit must be a positive number of items per category, not {cfg.limit}")
    if not 0 < cfg.target <= 1:
        raise BenchInputError(f"--target must be within (0, 1], not {cfg.target}")
    cfg.categories = parse_categories(cfg.categories)
    kind, _ = parse_mode(cfg.mode)
    if cfg.sweep_gate and kind != "ladder":
        raise BenchInputError("--sweep-gate needs --mode ladder (it replays the ladder's decision)")
    if cfg.reuse and not cfg.sweep_gate:
        raise BenchInputError("--reuse needs --sweep-gate (only a sweep stores one generation per rung)")
    from modelladder.bench.retrieval import BFCL_RUN, BenchShaping, check_options, shaping_figures

    check_options(cfg)
    if cfg.examples_k and not cfg.record_traces:
        raise BenchInputError("--examples-k reads examples from the trace store; it needs traces")
    fleet = load_bench_fleet(cfg.fleet_path)
    prepared = prepare_fleet(fleet, cfg.mode)
    check_out_dir(cfg.out_dir)
    run = _run_file(cfg.out_dir, cfg, prepared)

    store = None
    if cfg.record_traces:
        from modelladder.traces import TraceStore, TraceStoreError

        try:
            store = TraceStore(cfg.db)
        except TraceStoreError as exc:
            raise BenchInputError(f"cannot open the trace store: {exc}") from exc
    reuse, reuse_notes = load_reusable(cfg.reuse, prepared.fleet.rungs) if cfg.reuse else ({}, [])
    for note in [*prepared.notes, *reuse_notes]:
        con.print(f"note: {note}", markup=False)

    items = select_items(cfg.categories, cfg.limit)
    try:
        shaping = BenchShaping.build(cfg, store, [it.id for it in items], STEP_NAME, BFCL_RUN)
    except BaseException:
        if store is not None:
            store.close()
        raise
    results_path = cfg.out_dir / RESULTS
    done = read_results(results_path)
    todo = [it for it in items if it.id not in done]
    skipped = len(items) - len(todo)
    runner = BfclRunner(
        prepared,
        cfg.mode,
        sweep_gate=cfg.sweep_gate,
        backends=backends,
        traces=_Traces(store, lambda m: con.print(m, markup=False)),
        run_name=str(run["name"]),
        reuse=reuse,
        shaping=shaping,
    )
    runner.register(items)

    selected_ids = {it.id for it in items}
    correct = sum(1 for i, r in done.items() if i in selected_ids and r.get("ast_valid"))
    finished = skipped
    ran = 0
    writer = ResultsWriter(results_path)
    try:
        with _progress(con, cfg.progress) as progress:
            task = progress.add_task(
                f"bfcl {cfg.mode}" + (f" ({skipped} done before)" if skipped else ""),
                total=len(todo),
                acc="-",
            )
            for item in todo:
                if stop_after is not None and ran >= stop_after:
                    break
                rec = runner.run_item(item)
                writer.write(rec)
                done[item.id] = rec
                ran += 1
                finished += 1
                correct += bool(rec.get("ast_valid"))
                progress.update(task, advance=1, acc=f"{correct / finished:.1%}")
    finally:
        writer.close()
        if store is not None:
            store.close()

    records = [done[it.id] for it in items if it.id in done]
    summary = build_summary(cfg, run, prepared, records, len(items))
    if shaping is not None:
        summary["shaping"] = {**shaping.info, **shaping_figures(records)}
    (cfg.out_dir / SUMMARY).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    from modelladder.bench.report import write_report

    write_report(cfg.out_dir / REPORT, summary, records)
    return BenchOutcome(cfg.out_dir, summary, records, ran, skipped, runner.reused)


@contextmanager
def _progress(console: Any, enabled: bool) -> Iterator[Any]:
    with progress_bar("acc {task.fields[acc]}", console=console, enabled=enabled) as progress:
        yield progress
