"""``modelladder bench``: benchmarks. ``bench bfcl`` runs the Berkeley Function Calling
Leaderboard (v4, single-turn categories) through one rung or the ladder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from modelladder.cli import main
from modelladder.cli._common import TRACE_STORE, TRACE_STORE_HELP, fail, probe_llama_or_fail
from modelladder.fleet import FleetError, load_fleet

__all__ = ["bench", "bfcl", "output_options", "shaping_options"]


def output_options(f: Any) -> Any:
    """``--out``, ``--db`` and ``--no-progress``: the same for every benchmark command."""
    f = click.option("--no-progress", is_flag=True, help="No progress bar.")(f)
    f = click.option("--db", type=TRACE_STORE, default=None, help=TRACE_STORE_HELP)(f)
    return click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
                        help="Output directory (results.jsonl, summary.json, report.html). "
                        "Rerunning with the same one resumes.")(f)  # fmt: skip


def shaping_options(f: Any) -> Any:
    """What the edge rung sees (issue 18): retrieved examples, tool selection, compaction; the
    same options for every benchmark that runs steps through the ladder."""
    f = click.option("--history-budget", type=int, default=None,
                     help="Edge rungs see older tool outputs shortened beyond this many tokens.")(f)  # fmt: skip
    f = click.option("--max-tools", type=int, default=None,
                     help="Edge rungs see only this many tools (by relevance).")(f)  # fmt: skip
    f = click.option("--index", type=click.Choice(["bm25", "minilm"]), default="bm25", show_default=True,
                     help="Example index: SQLite FTS5 BM25, or MiniLM embeddings (the `retrieval` extra).")(f)  # fmt: skip
    f = click.option("--examples-ids", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="Only the items listed in this file (one id per line) may be examples, "
                          "instead of the other fold (an outside train split).")(f)  # fmt: skip
    f = click.option("--examples-from", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="An earlier run of this benchmark (e.g. --mode rung:reference) whose answers, "
                          "labelled by the checker, are the examples.")(f)  # fmt: skip
    return click.option("--examples-k", type=int, default=0, show_default=True,
                        help="Edge rungs see this many retrieved verified answers as prior turns "
                             "(two folds by item id: only the other fold's).")(f)  # fmt: skip


@main.group("bench")
def bench() -> None:
    """Measure rungs and the ladder on public benchmarks."""


@bench.command("bfcl")
@click.option(
    "--category",
    "categories",
    multiple=True,
    required=True,
    metavar="C",
    help="BFCL category (repeat, or comma-separate): simple_python, multiple, parallel, parallel_multiple, "
    "live_simple, live_multiple, live_parallel, live_parallel_multiple, irrelevance, live_irrelevance.",
)
@click.option("--limit", type=int, default=None, help="Only the first N items of each category.")
@click.option(
    "--mode",
    default="ladder",
    show_default=True,
    help="`ladder` (the fleet's ladder and gate) or `rung:<name>` (one rung alone, gate off).",
)
@click.option(
    "--fleet",
    "fleet_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Fleet file (default: the bundled bench fleet: SmolLM2-135M, Gemma-3-270M, `reference` oracle on top).",
)
@click.option(
    "--sweep-gate",
    is_flag=True,
    help="Generate each rung's answer once per item and replay the ladder at a grid of gate thresholds "
    "(calibrated on half the items, reported on the other half).",
)
@click.option(
    "--target",
    type=float,
    default=0.95,
    show_default=True,
    help="With --sweep-gate: the accuracy to reach, as a share of the top rung's.",
)
@shaping_options
@output_options
@click.option(
    "--reuse",
    "reuse",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="With --sweep-gate: take the generations of identically configured rungs from an earlier "
    "--out directory (a `rung:<name>` run or another sweep) instead of generating them again.",
)
def bfcl(
    categories: tuple[str, ...],
    limit: int | None,
    mode: str,
    fleet_path: Path | None,
    sweep_gate: bool,
    target: float,
    out_dir: Path,
    db: Path | str | None,
    reuse: tuple[Path, ...],
    no_progress: bool,
    examples_k: int,
    examples_from: Path | None,
    examples_ids: Path | None,
    index: str,
    max_tools: int | None,
    history_budget: int | None,
) -> None:
    """Run BFCL v4 items, score them with BFCL's AST checker, write results and a report.

    \b
    Examples:
      modelladder bench bfcl --category simple_python --mode rung:smollm2-135m --out runs/smol
      modelladder bench bfcl --category simple_python,multiple,live_simple,irrelevance \\
          --sweep-gate --out runs/ladder
    """
    from rich.console import Console

    try:
        from modelladder.bench.runner import BenchConfig, BenchInputError, run_bench
    except ModuleNotFoundError as exc:  # bfcl-eval is an optional extra
        fail(f"the BFCL benchmark needs the `bench` extra: pip install 'modelladder[bench]' ({exc})")
    from modelladder.bench.table import print_summary

    cfg = BenchConfig(
        categories=list(categories),
        out_dir=out_dir,
        mode=mode,
        limit=limit,
        fleet_path=fleet_path,
        sweep_gate=sweep_gate,
        target=target,
        db=db,
        progress=not no_progress,
        reuse=list(reuse),
        examples_k=examples_k,
        examples_from=examples_from,
        examples_ids=examples_ids,
        index=index,
        max_tools=max_tools,
        history_budget=history_budget,
    )
    _probe(fleet_path)
    try:
        outcome = run_bench(cfg)
    except BenchInputError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        # every finished item is already in results.jsonl
        click.echo(
            f"\ninterrupted; rerun the same command to resume from {out_dir / 'results.jsonl'}", err=True
        )
        raise SystemExit(130) from None
    print_summary(outcome.summary, Console(highlight=False))
    click.echo(
        f"{outcome.ran} items run, {outcome.skipped} already done"
        + (f", {outcome.reused} generations reused" if outcome.reused else "")
        + "; "
        f"results in {out_dir / 'results.jsonl'}, report {out_dir / 'report.html'}"
    )


def _probe(fleet_path: Path | None) -> None:
    """Does llama.cpp run on this CPU? Any local model answers that (the probe is per build);
    a bad --fleet is left for the runner to report."""
    try:
        fleet = load_fleet(fleet_path)
    except FleetError:
        fleet = load_fleet(None)
    probe_llama_or_fail(fleet)
