"""What the edge rung sees in ``bench agent`` and ``bench bfcl`` (issue 18's proof): retrieved
examples, tool selection, history compaction, with the no-leak rules of a benchmark.

Examples come from the trace store, as in production: ``--examples-from DIR`` names an
earlier run of the same benchmark whose steps were labelled by its checker (every scored step
of ``bench agent`` and every item of ``bench bfcl`` gets a ``correct`` label: the exec score,
BFCL's AST checker); its verified answers are indexed
(:class:`modelladder.learning.ExampleIndex`, in ``<out>/examples-<index>.sqlite``, rebuilt
each start) and reach the edge prompt through the ladder's shaping seam
(:class:`modelladder.learning.EdgeShaper`). A ``reference`` run is the usual source: its
answers are the gold calls, standing for a teacher's answers a checker verified.

Never tune on what is reported: offline, items fall in two folds by a hash of their id and a
step is shown examples from the *other* fold only; ``--online``, only examples of items that
arrived earlier in the fixed shuffled order; ``--examples-ids FILE``, only examples of the items
listed (an outside train split, e.g. a distillation dataset's, so both use the same examples).
Examples of the step's own item are never shown.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelladder.bench.config import BenchInputError
from modelladder.bench.results import RESULTS, read_results
from modelladder.bench.summary import _ratio

__all__ = ["AGENT_STEPS", "BFCL_RUN", "INDEXES", "BenchShaping", "SourceRun", "check_options", "fold",
           "run_fields", "shaping_figures"]  # fmt: skip

INDEXES = ("bm25", "minilm")


@dataclass(frozen=True)
class SourceRun:
    """Which earlier runs may supply examples (``accepts`` reads their ``run.json``), named in
    errors as ``what``, and ``item_of``: trace run id -> benchmark item, from their records."""

    bench: str
    what: str
    accepts: Callable[[Mapping[str, Any]], bool]
    item_of: Callable[[Iterable[Mapping[str, Any]]], dict[str, str]]


AGENT_STEPS = SourceRun(
    "bench agent", "a step-suite run of bench agent",
    lambda run: run.get("bench") == "agent" and run.get("suite") == "steps",
    lambda recs: {str(r["run_id"]): str(r["item"]) for r in recs if r.get("run_id")},
)  # fmt: skip
# runs of bench bfcl before this one have no "bench" field in run.json: their name says it
BFCL_RUN = SourceRun(
    "bench bfcl", "an earlier bench bfcl run",
    lambda run: run.get("bench", "bfcl") == "bfcl" and str(run.get("name", "")).startswith("bfcl-"),
    lambda recs: {str(i): str(r["id"]) for r in recs for i in (r.get("run_ids") or [])},
)  # fmt: skip


def check_options(cfg: Any) -> None:
    """The cheap checks of the shaping options, before any model loads (both benchmarks)."""
    if cfg.examples_k < 0:
        raise BenchInputError(f"--examples-k must be 0 or more, not {cfg.examples_k}")
    if cfg.examples_k and cfg.examples_from is None:
        raise BenchInputError("--examples-k needs --examples-from DIR (an earlier run of this benchmark "
                              "whose answers the checker labelled, e.g. --mode rung:reference)")  # fmt: skip
    if cfg.index not in INDEXES:
        raise BenchInputError(f"unknown --index {cfg.index!r}; use one of: {', '.join(INDEXES)}")
    if getattr(cfg, "examples_ids", None) is not None:
        if not cfg.examples_k:
            raise BenchInputError("--examples-ids says which items may be examples; it needs --examples-k")
        if getattr(cfg, "online", False):
            raise BenchInputError(
                "--examples-ids replaces the fold rule; --online has its own (earlier items)"
            )
        _allowed_items(cfg)
    for name, v in (("--max-tools", cfg.max_tools), ("--history-budget", cfg.history_budget)):
        if v is not None and v < 1:
            raise BenchInputError(f"{name} must be a positive number, not {v}")


def _allowed_items(cfg: Any) -> set[str] | None:
    """The items ``--examples-ids FILE`` lists (one id per line), or ``None`` without it."""
    path = getattr(cfg, "examples_ids", None)
    if path is None:
        return None
    try:
        ids = set(Path(path).read_text().split())
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchInputError(f"--examples-ids {path}: cannot read it ({exc})") from exc
    if not ids:
        raise BenchInputError(f"--examples-ids {path}: lists no item id (one per line)")
    return ids


def run_fields(cfg: Any) -> dict[str, Any]:
    """The shaping options a resumed run must share with the run it resumes (``run.json``);
    only those in use, so runs without shaping keep the ``run.json`` they always had."""
    ids = getattr(cfg, "examples_ids", None)
    return {**({"examples_k": cfg.examples_k, "examples_from": str(cfg.examples_from), "index": cfg.index}
               if cfg.examples_k else {}),
            **({"examples_ids": str(ids)} if ids is not None and cfg.examples_k else {}),
            **({"max_tools": cfg.max_tools} if cfg.max_tools else {}),
            **({"history_budget": cfg.history_budget} if cfg.history_budget else {})}  # fmt: skip


def fold(item_id: str) -> int:
    """0 or 1, fixed by the item id (sha256), so the split is the same on every machine."""
    return hashlib.sha256(item_id.encode()).digest()[0] % 2


@dataclass
class BenchShaping:
    """The shaper of one ``bench agent`` run and the state its no-leak rule reads."""

    shaper: Any
    info: dict[str, Any]
    current_item: str | None = None

    @classmethod
    def build(cls, cfg: Any, store: Any, order: Sequence[str], step_name: str,
              source: SourceRun = AGENT_STEPS) -> BenchShaping | None:  # fmt: skip
        """``None`` when the run shapes nothing. Raises :class:`BenchInputError` on bad options.
        ``cfg`` has ``examples_k``, ``examples_from``, ``index``, ``max_tools``,
        ``history_budget``, ``online`` and ``out_dir``; ``source`` says which earlier runs may
        supply the examples and how their records name items."""
        from modelladder.learning import EdgeShaper

        if not (cfg.examples_k or cfg.max_tools or cfg.history_budget):
            return None
        info: dict[str, Any] = {"examples_k": cfg.examples_k, "max_tools": cfg.max_tools,
                                "history_budget_tokens": cfg.history_budget}  # fmt: skip
        if not cfg.examples_k:
            return cls(EdgeShaper(None), info)
        index, item_of, built = _index_from(cfg, store, step_name, source)
        info.update(built)
        position = {item: i for i, item in enumerate(order)}
        state = cls(EdgeShaper(index), info)

        allowed = _allowed_items(cfg)
        if allowed is not None:
            info["examples_ids"] = str(cfg.examples_ids)

        def exclude(hit: Any, _req: Any) -> bool:
            src, cur = item_of.get(hit.example.id), state.current_item
            if src is None or cur is None or src == cur:
                return True
            if allowed is not None:  # an outside train split replaces the fold rule
                return src not in allowed
            if cfg.online:
                return position.get(src, len(position)) >= position.get(cur, -1)
            return fold(src) == fold(cur)

        state.shaper.exclude = exclude
        return state


def _index_from(cfg: Any, store: Any, step_name: str,
                source: SourceRun) -> tuple[Any, dict[str, str], dict[str, Any]]:  # fmt: skip
    from modelladder.learning.example_index import ExampleIndex
    from modelladder.learning.example_source import examples_from_store

    src = cfg.examples_from
    if src is None:
        raise BenchInputError(f"--examples-k needs --examples-from DIR ({source.what}, e.g. rung:reference)")
    if store is None:
        raise BenchInputError("--examples-k reads examples from the trace store; drop --no-traces")
    try:
        run = json.loads((Path(src) / "run.json").read_text())
    except (OSError, ValueError) as exc:
        raise BenchInputError(f"--examples-from {src}: not a {source.bench} run directory ({exc})") from exc
    if not source.accepts(run):
        raise BenchInputError(f"--examples-from {src}: needs {source.what}")
    records = read_results(Path(src) / RESULTS, repair=False)
    item_of = source.item_of(records.values())
    if not item_of:
        raise BenchInputError(f"--examples-from {src}: no recorded steps in {RESULTS}")
    examples = [e for e in examples_from_store(store, step_name) if e.id in item_of]
    if not examples:
        raise BenchInputError(
            f"--examples-from {src}: none of its {len(item_of)} steps is a verified answer in the trace store "
            f"(was it run with traces, into the same --db?)"
        )
    index = ExampleIndex(Path(cfg.out_dir) / f"examples-{cfg.index}.sqlite", embedder=cfg.index)
    index.replace(examples, keys=[step_name])  # one transaction: rebuilt on every start
    return index, item_of, {"examples_from": str(src), "examples_source_run": run.get("name"),
                            "examples_indexed": len(examples), "index": cfg.index}  # fmt: skip


def shaping_figures(recs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the edge rung was shown (step suite or loops' hops): examples per step, tools
    offered, the recall of the gold call's tool among the offered ones, prompt tokens."""
    attempts = [
        a
        for r in recs
        for a in (r.get("attempts") or r.get("hop_records") or [])
        if a.get("placement") == "edge"
    ]
    shaped = [a.get("shaping") or {} for a in attempts]
    offered = [(r, a.get("shaping") or {}) for r in recs for a in (r.get("attempts") or [])
               if a.get("placement") == "edge" and (a.get("shaping") or {}).get("tools") is not None]  # fmt: skip
    # the gold call's tool: bench agent's records name it (``gold``), bench bfcl's hold none
    with_gold = [(str(r["gold"]).split("(", 1)[0], sh["tools"]) for r, sh in offered if r.get("gold")]
    return {
        "edge_attempts": len(attempts),
        "examples_per_attempt": _ratio(sum(len(s.get("examples") or []) for s in shaped), len(attempts)),
        "examples_invalid": sum(int(s.get("examples_invalid") or 0) for s in shaped),
        "tools_offered_mean": _ratio(sum(len(sh["tools"]) for _, sh in offered), len(offered)),
        "gold_tool_recall": _ratio(sum(1 for g, tools in with_gold if g in tools), len(with_gold)),
        "compacted_attempts": sum(1 for s in shaped if s.get("compaction")),
        "edge_prompt_tokens_mean": _ratio(sum(int(a.get("prompt_tokens") or 0) for a in attempts), len(attempts)),
    }  # fmt: skip
