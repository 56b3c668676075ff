"""``modelladder bench agent``: run the step suite or the closed loops through one rung or the
ladder, score, record, summarise.

Reused from ``bench bfcl``: fleet preparation and the ``reference`` rule (:mod:`..config`),
the results file and its resume (:mod:`..results`), attempt records, trace recording
(:class:`..runner._Traces`), the progress bar. One line of ``results.jsonl`` per step (step
suite: id ``<item>#t<turn>k<k>``) or per workflow (loops suite: the item id), flushed as soon
as it is scored; a rerun with the same ``--out`` skips what is there. The steps of one item
run in order, one item after another, so each step's prompt extends the previous one's and the
llama.cpp backend evaluates only the new tokens; items with the same tools run one after another
(:func:`group_by_tools`), so the ~4.3k-token tool list is evaluated once per tool list.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelladder._progress import progress_bar
from modelladder.backends.base import Backend
from modelladder.bench.agent.data import CATEGORIES, AgentItem, load_agent_items
from modelladder.bench.agent.loops import DEFAULT_STEP_LIMIT, Hop, official_check, run_loop
from modelladder.bench.agent.oracle import AgentReference, answer_text
from modelladder.bench.agent.steps import StepCase, iter_steps, score_step
from modelladder.bench.config import (
    BenchInputError,
    PreparedFleet,
    check_out_dir,
    fleet_digest,
    load_bench_fleet,
    parse_mode,
    prepare_fleet,
)
from modelladder.bench.results import RESULTS, ResultsWriter, attempt_record, open_run, read_results
from modelladder.bench.sweep import single_rung_policy
from modelladder.ladder import Ladder, Resolved, Step, Unresolved

__all__ = [
    "AgentConfig",
    "AgentOutcome",
    "AgentRunner",
    "STEP_NAME",
    "SUITES",
    "parse_agent_categories",
    "run_agent",
    "group_by_tools",
    "select_items",
    "validate",
]

SUITES = ("steps", "loops")
STEP_NAME = "bfcl_agent"
SUMMARY, REPORT = "summary.json", "report.html"


@dataclass
class AgentConfig:
    categories: list[str]
    out_dir: Path
    suite: str = "steps"
    mode: str = "ladder"
    limit: int | None = None
    offset: int = 0  # skip the first N items of each category (a held-out window with --limit)
    fleet_path: Path | None = None
    step_limit: int = DEFAULT_STEP_LIMIT
    db: Path | str | None = None  # a SQLite file or a postgresql:// URL
    record_traces: bool = True
    progress: bool = True
    online: bool = False
    update_every: int = 50
    seed: int = 0
    compare: list[Path] = field(default_factory=list)
    # what the edge rung sees (bench.retrieval): examples from an earlier run's verified
    # answers, tool selection, history compaction
    examples_k: int = 0
    examples_from: Path | None = None
    index: str = "bm25"
    max_tools: int | None = None
    history_budget: int | None = None
    examples_ids: Path | None = None  # only these items may be examples (replaces the fold rule)
    # --learn-gate ALPHA (with --online, ladder mode): the gate and the ex-ante skip are
    # calibrated from this run's traces every --update-every steps and applied to later steps
    learn_gate: float | None = None


@dataclass
class AgentOutcome:
    out_dir: Path
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    ran: int
    skipped: int


def parse_agent_categories(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        for c in str(v).split(","):
            c = c.strip()
            if c and c not in CATEGORIES:
                raise BenchInputError(f"unknown multi-turn category {c!r}; valid: {', '.join(CATEGORIES)}")
            if c and c not in out:
                out.append(c)
    if not out:
        raise BenchInputError(f"no category given; pass --category with one of: {', '.join(CATEGORIES)}")
    return out


def validate(cfg: AgentConfig) -> None:
    """Every cheap check, before any model loads (raises :class:`BenchInputError`)."""
    import importlib.util

    if importlib.util.find_spec("bfcl_eval") is None:
        raise BenchInputError("the BFCL data is missing: pip install 'modelladder[bench]'")
    if cfg.suite not in SUITES:
        raise BenchInputError(f"unknown suite {cfg.suite!r}; use one of: {', '.join(SUITES)}")
    if cfg.limit is not None and cfg.limit <= 0:
        raise BenchInputError(f"--limit must be a positive number of items per category, not {cfg.limit}")
    if cfg.step_limit <= 0:
        raise BenchInputError(
            f"--step-limit must be a positive number of hops per turn, not {cfg.step_limit}"
        )
    if cfg.update_every <= 0:
        raise BenchInputError(f"--update-every must be a positive number of steps, not {cfg.update_every}")
    from modelladder.bench.retrieval import check_options

    if cfg.offset < 0:
        raise BenchInputError(f"--offset must be 0 or more items, not {cfg.offset}")
    check_options(cfg)
    if cfg.learn_gate is not None:
        if not 0 < cfg.learn_gate < 1:
            raise BenchInputError(
                f"--learn-gate is an accepted-wrong rate within (0, 1), not {cfg.learn_gate}"
            )
        if not cfg.online or not cfg.mode.startswith("ladder") or not cfg.record_traces:
            raise BenchInputError(
                "--learn-gate needs --online, --mode ladder and traces (it learns from them)"
            )
    cfg.categories = parse_agent_categories(cfg.categories)
    parse_mode(cfg.mode)


class AgentRunner:
    """Asks the ladder (or one rung) for each step or hop; every attempt goes to the traces."""

    def __init__(self, prepared: PreparedFleet, cfg: AgentConfig, *, backends: Mapping[str, Backend] | None,
                 traces: Any, run_name: str, shaping: Any = None, learned: Any = None):  # fmt: skip
        self.cfg = cfg
        self.kind, rung = parse_mode(cfg.mode)
        self.policy = (
            prepared.policy if self.kind == "ladder" else single_rung_policy(prepared.policy, rung or "")
        ).merged(examples_k=cfg.examples_k or None, max_tools=cfg.max_tools,
                 history_budget_tokens=cfg.history_budget)  # fmt: skip
        self.shaping = shaping
        given = dict(backends or {})
        self.oracles: list[AgentReference] = []
        for r in prepared.fleet.rungs:
            if r.backend == "reference":
                b = given.setdefault(r.name, AgentReference.from_rung(r))
                if isinstance(b, AgentReference):
                    self.oracles.append(b)
        self.ladder = Ladder(prepared.fleet, store=None, backends=given,
                             shaper=shaping.shaper if shaping is not None else None,
                             gate=learned, skip=learned)  # fmt: skip
        self.traces = traces
        self.run_name = run_name
        self._steps: dict[tuple[str, ...], Step] = {}

    def _step(self, tools: Sequence[dict[str, Any]]) -> Step:
        """One contract per tool list (an item's tools, or a miss_func turn's), built once."""
        from modelladder.contracts import ToolCalls

        key = tuple(t["function"]["name"] for t in tools)
        if key not in self._steps:
            parallel = self.cfg.suite == "loops"
            contract = ToolCalls(tools, parallel=parallel, allow_no_call=True)
            self._steps[key] = Step(STEP_NAME, contract, max_tokens=512 if parallel else 256)
        return self._steps[key]

    def ask(self, messages: list[dict[str, Any]], tools: Sequence[dict[str, Any]], oracle_text: str,
            tags: Mapping[str, str]) -> tuple[Resolved | Unresolved, dict[str, Any]]:  # fmt: skip
        step = self._step(tools)
        with ExitStack() as stack:
            for o in self.oracles:
                stack.enter_context(o.answering(oracle_text))
            res = self.ladder.run(step, messages, policy=self.policy, tags={
                "bench": "bfcl_agent", "bench_run": self.run_name, "mode": self.cfg.mode,
                "suite": self.cfg.suite, **tags})  # fmt: skip
        self.traces.record(res)
        return res, _attempt_fields(res, ladder=self.kind == "ladder")

    # -- step suite ------------------------------------------------------------------------
    def run_case(self, case: StepCase) -> dict[str, Any]:
        if self.shaping is not None:
            self.shaping.current_item = case.item.id
        named = case.gold_arguments
        res, rec = self.ask(case.messages, case.tools, answer_text([named] if named else []),
                            {"item": case.item.id, "category": case.item.category, "turn": str(case.turn),
                             "k": str(case.k)})  # fmt: skip
        calls = res.value if isinstance(res, Resolved) else None
        why = None
        if isinstance(res, Unresolved):
            why = rec["escalations"][-1] if rec["escalations"] else res.reason
        score = score_step(case, calls, why)
        out = {"id": case.id, "item": case.item.id, "category": case.item.category, "turn": case.turn,
               "k": case.k, "end_of_turn": case.gold is None, "gold": case.gold, **score, **rec}  # fmt: skip
        out["ok"] = bool(score["exec_ok"])
        if isinstance(res, Resolved):  # the checker's label: what retrieval and the gate learn from
            self.traces.label(res.run_id, res.accepted.index, out["ok"])
        if self.kind == "ladder":
            out["accepted_wrong"] = rec["placement"] == "edge" and not out["ok"]
        return out

    # -- loops suite -----------------------------------------------------------------------
    def run_workflow(self, item: AgentItem) -> dict[str, Any]:
        if self.shaping is not None:
            self.shaping.current_item = item.id

        def ask(hop: Hop) -> tuple[list[dict[str, Any]] | None, dict[str, Any]]:
            res, rec = self.ask(hop.messages, hop.tools, answer_text(hop.gold_rest),
                                {"item": item.id, "category": item.category, "turn": str(hop.turn),
                                 "hop": str(hop.hop)})  # fmt: skip
            rec.pop("attempts", None)
            return (res.value if isinstance(res, Resolved) else None), rec

        loop = run_loop(item, ask, step_limit=self.cfg.step_limit)
        verdict = official_check(item, loop.trajectory)
        hops = loop.hops
        return {
            "id": item.id, "category": item.category, "ok": bool(verdict["valid"]),
            "error_type": verdict.get("error_type"), "error_message": (verdict.get("error_message") or "")[:300],
            "force_terminated": loop.force_terminated, "hops": len(hops),
            "edge_hops": sum(1 for h in hops if h["placement"] == "edge"),
            "latency_s": sum(h["latency_s"] for h in hops), "cost_usd": sum(h["cost_usd"] for h in hops),
            "prompt_tokens": sum(h["prompt_tokens"] for h in hops),
            "cached_prompt_tokens": sum(h["cached_prompt_tokens"] for h in hops),
            "escalations": [e for h in hops for e in h["escalations"]],
            "trajectory": loop.trajectory, "hop_records": hops,
        }  # fmt: skip


def _attempt_fields(res: Resolved | Unresolved, *, ladder: bool) -> dict[str, Any]:
    return {
        "outcome": res.outcome, "rung": res.rung,
        "placement": res.placement if isinstance(res, Resolved) else None,
        "latency_s": sum(a.latency_s for a in res.attempts), "cost_usd": res.cost_usd,
        "prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
        "cached_prompt_tokens": sum(a.cached_prompt_tokens for a in res.attempts),
        "escalations": list(res.escalations), "run_id": res.run_id,
        "attempts": [attempt_record(a) for a in res.attempts],
    }  # fmt: skip


# --------------------------------------------------------------------------- orchestration


def select_items(cfg: AgentConfig) -> list[AgentItem]:
    """Items of every category, interleaved (item 0 of each, then item 1...); ``--online``
    shuffles them once with a fixed seed, as traffic.

    Offline, items are then grouped by their opening tool list (stable: groups in order of first
    appearance, items in their order within a group). 200 items of a category draw only 20
    distinct tool lists, and the system text with the tools (~4.3k tokens) is the prompt's
    prefix, so consecutive items of one group reuse it from the KV cache: the tool list is
    evaluated once per group instead of once per item. Online keeps the traffic order."""
    end = None if cfg.limit is None else cfg.offset + cfg.limit
    per_cat = [load_agent_items(c, end)[cfg.offset :] for c in cfg.categories]
    items = [x[i] for i in range(max(map(len, per_cat), default=0)) for x in per_cat if i < len(x)]
    if cfg.online:
        import random

        random.Random(cfg.seed).shuffle(items)
        return items
    return group_by_tools(items)


def group_by_tools(items: Sequence[AgentItem]) -> list[AgentItem]:
    """Stable grouping by the names of the tools visible at turn 0 (see :func:`select_items`)."""
    groups: dict[tuple[str, ...], list[AgentItem]] = {}
    for it in items:
        groups.setdefault(tuple(t["function"]["name"] for t in it.tools_at(0)), []).append(it)
    return [it for g in groups.values() for it in g]


def _run_file(cfg: AgentConfig, prepared: PreparedFleet) -> dict[str, Any]:
    """Create or check ``run.json``: a resumed run must have the same configuration."""
    from modelladder.bench.retrieval import run_fields

    wanted = {"bench": "agent", "suite": cfg.suite, "mode": cfg.mode, "fleet_digest": fleet_digest(prepared),
              "step_limit": cfg.step_limit, "online": cfg.online, "seed": cfg.seed,
              **({"offset": cfg.offset} if cfg.offset else {}), **run_fields(cfg)}  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return open_run(cfg.out_dir, wanted, {"name": f"agent-{cfg.out_dir.resolve().name}-{stamp}", **wanted,
                    "rungs": [asdict(r) for r in prepared.fleet.rungs], "policy": asdict(prepared.policy)})  # fmt: skip


def _open_store(cfg: AgentConfig) -> Any:
    if not cfg.record_traces:
        return None
    from modelladder.traces import TraceStore, TraceStoreError

    try:
        return TraceStore(cfg.db)
    except TraceStoreError as exc:
        raise BenchInputError(f"cannot open the trace store: {exc}") from exc


def run_agent(cfg: AgentConfig, *, backends: Mapping[str, Backend] | None = None, console: Any = None,
              stop_after: int | None = None) -> AgentOutcome:  # fmt: skip
    """The whole command. ``stop_after`` runs at most that many new records (a resume test hook)."""
    from rich.console import Console

    from modelladder.bench.agent.online import OnlineLearner
    from modelladder.bench.agent.report import write_agent_report
    from modelladder.bench.agent.summary import build_agent_summary
    from modelladder.bench.retrieval import BenchShaping, shaping_figures
    from modelladder.bench.runner import _Traces

    con = console or Console(stderr=True, highlight=False)
    validate(cfg)
    prepared = prepare_fleet(load_bench_fleet(cfg.fleet_path), cfg.mode)
    check_out_dir(cfg.out_dir)
    run = _run_file(cfg, prepared)
    store = _open_store(cfg)
    for note in prepared.notes:
        con.print(f"note: {note}", markup=False)
    items = select_items(cfg)
    try:
        shaping = BenchShaping.build(cfg, store, [it.id for it in items], STEP_NAME)
    except BaseException:
        if store is not None:
            store.close()
        raise
    learned, gate_learner = None, None
    if cfg.learn_gate is not None and store is not None:
        from modelladder.bench.agent.online import GateLearner
        from modelladder.learning import StoreGate

        if any(k == STEP_NAME for k, _, _ in store.step_keys()) and not read_results(cfg.out_dir / RESULTS):
            store.close()
            raise BenchInputError(f"--learn-gate learns from this run's traces only, but {store.path} already "
                                  f"holds runs of step {STEP_NAME!r}; pass --db with a new file")  # fmt: skip
        learned = StoreGate(store, poll_s=0, drift_s=0)
        gate_learner = GateLearner(store, STEP_NAME, alpha=cfg.learn_gate)
    runner = AgentRunner(prepared, cfg, backends=backends, run_name=str(run["name"]), shaping=shaping,
                         traces=_Traces(store, lambda m: con.print(m, markup=False)), learned=learned)  # fmt: skip
    learner = OnlineLearner(cfg.update_every, update=gate_learner) if cfg.online else None
    path = cfg.out_dir / RESULTS
    done = read_results(path)
    order: list[str] = []
    ran = skipped = 0
    writer = ResultsWriter(path)
    ok = sum(1 for r in done.values() if r.get("ok"))
    total = sum(len(it.turns) + it.n_gold_calls for it in items) if cfg.suite == "steps" else len(items)
    try:
        with progress_bar("acc {task.fields[acc]}", console=con, enabled=cfg.progress) as bar:
            task = bar.add_task(f"agent {cfg.suite} {cfg.mode}", total=total, acc="-")
            for item in items:
                units: Any = iter_steps(item) if cfg.suite == "steps" else [item]
                for unit in units:
                    uid = unit.id
                    order.append(uid)
                    if uid in done:
                        skipped += 1
                    elif stop_after is not None and ran >= stop_after:
                        break
                    else:
                        run_one: Callable[[Any], dict[str, Any]] = (
                            runner.run_case if cfg.suite == "steps" else runner.run_workflow
                        )
                        rec = run_one(unit)
                        if learner is not None:
                            learner.observe(rec, position=len(order))
                        writer.write(rec)
                        done[uid] = rec
                        ran += 1
                        ok += rec["ok"]
                    bar.update(task, advance=1, acc=f"{ok / max(ran + skipped, 1):.1%}")
                if stop_after is not None and ran >= stop_after:
                    break
    finally:
        writer.close()
        if store is not None:
            store.close()
    records = [done[i] for i in order if i in done]
    summary = build_agent_summary(cfg, run, prepared, records, total)
    if gate_learner is not None and summary.get("online") is not None:
        summary["online"]["learner"] = {
            "kind": "gate+skip",
            "alpha": cfg.learn_gate,
            "events": gate_learner.events,
        }
    if shaping is not None:
        summary["shaping"] = {**shaping.info, **shaping_figures(records)}
    (cfg.out_dir / SUMMARY).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    write_agent_report(cfg.out_dir / REPORT, summary, records, cfg.compare)
    return AgentOutcome(cfg.out_dir, summary, records, ran, skipped)
