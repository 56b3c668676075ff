"""What the edge rung sees in ``bench agent`` (issue 18's proof): retrieved examples, tool
selection, history compaction, with the no-leak rules of a benchmark.

Examples come from the trace store, as in production: ``--examples-from DIR`` names an
earlier step-suite run whose steps were labelled by the checker (every step of ``bench
agent`` gets a ``correct`` label from its exec score); its verified answers are indexed
(:class:`modelladder.learning.ExampleIndex`, in ``<out>/examples-<index>.sqlite``, rebuilt
each start) and reach the edge prompt through the ladder's shaping seam
(:class:`modelladder.learning.EdgeShaper`). A ``reference`` run is the usual source: its
answers are the gold calls, standing for a teacher's answers a checker verified.

Never tune on what is reported: offline, items fall in two folds by a hash of their id and a
step is shown examples from the *other* fold only; ``--online``, only examples of items that
arrived earlier in the fixed shuffled order. Examples of the step's own item are never shown.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelladder.bench.config import BenchInputError
from modelladder.bench.results import RESULTS, read_results

__all__ = ["INDEXES", "BenchShaping", "fold"]

INDEXES = ("bm25", "minilm")


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
    def build(cls, cfg: Any, store: Any, order: Sequence[str], step_name: str) -> BenchShaping | None:
        """``None`` when the run shapes nothing. Raises :class:`BenchInputError` on bad options."""
        from modelladder.learning import EdgeShaper

        if not (cfg.examples_k or cfg.max_tools or cfg.history_budget):
            return None
        info: dict[str, Any] = {"examples_k": cfg.examples_k, "max_tools": cfg.max_tools,
                                "history_budget_tokens": cfg.history_budget}  # fmt: skip
        if not cfg.examples_k:
            return cls(EdgeShaper(None), info)
        index, item_of, built = _index_from(cfg, store, step_name)
        info.update(built)
        position = {item: i for i, item in enumerate(order)}
        state = cls(EdgeShaper(index), info)

        def exclude(hit: Any, _req: Any) -> bool:
            src, cur = item_of.get(hit.example.id), state.current_item
            if src is None or cur is None or src == cur:
                return True
            if cfg.online:
                return position.get(src, len(position)) >= position.get(cur, -1)
            return fold(src) == fold(cur)

        state.shaper.exclude = exclude
        return state


def _index_from(cfg: Any, store: Any, step_name: str) -> tuple[Any, dict[str, str], dict[str, Any]]:
    from modelladder.learning.example_index import ExampleIndex
    from modelladder.learning.example_source import examples_from_store

    src = cfg.examples_from
    if src is None:
        raise BenchInputError(
            "--examples-k needs --examples-from DIR (an earlier step-suite run, e.g. reference)"
        )
    if store is None:
        raise BenchInputError("--examples-k reads examples from the trace store; drop --no-traces")
    try:
        run = json.loads((Path(src) / "run.json").read_text())
    except (OSError, ValueError) as exc:
        raise BenchInputError(f"--examples-from {src}: not a bench agent run directory ({exc})") from exc
    if run.get("bench") != "agent" or run.get("suite") != "steps":
        raise BenchInputError(f"--examples-from {src}: needs a step-suite run of bench agent")
    records = read_results(Path(src) / RESULTS, repair=False)
    item_of = {str(r["run_id"]): str(r["item"]) for r in records.values() if r.get("run_id")}
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
