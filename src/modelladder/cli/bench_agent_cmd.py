"""``modelladder bench agent``: BFCL v4 multi-turn workloads, step by step or as closed loops."""

from __future__ import annotations

from pathlib import Path

import click

from modelladder.cli._common import fail
from modelladder.cli.bench_cmd import _probe, bench, output_options, shaping_options

__all__ = ["agent"]


@bench.command("agent")
@click.option(
    "--category",
    "categories",
    multiple=True,
    required=True,
    metavar="C",
    help="multi_turn_base, multi_turn_long_context, multi_turn_miss_func, multi_turn_miss_param "
    "(repeat, or comma-separate).",
)
@click.option(
    "--suite",
    default="steps",
    show_default=True,
    help="`steps`: every gold call and end of turn as one step, gold history; "
    "`loops`: each item as a closed loop on the ladder's own calls, scored by BFCL's checker.",
)
@click.option(
    "--mode",
    default="ladder",
    show_default=True,
    help="`ladder`, or `rung:<name>` (one rung alone, gate off; `rung:reference` is the oracle).",
)
@click.option("--limit", type=int, default=None, help="Only the first N items of each category.")
@click.option("--offset", type=int, default=0, show_default=True,
              help="Skip the first N items of each category (with --limit: a window, e.g. held-out items).")  # fmt: skip
@click.option(
    "--fleet",
    "fleet_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Fleet file (default: the bundled bench fleet, `reference` oracle on top).",
)
@click.option("--step-limit", type=int, default=20, show_default=True, help="Loops: most hops per turn.")
@click.option(
    "--online", is_flag=True, help="Items in a fixed shuffled order; learning curve in summary.json."
)
@click.option("--update-every", type=int, default=50, show_default=True, help="With --online: update period.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --online: the order's seed.")
@click.option(
    "--compare",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Other `bench agent` output directories to plot next to this run in report.html.",
)
@shaping_options
@click.option("--learn-gate", "learn_gate", type=float, default=None, metavar="ALPHA",
              help="With --online --mode ladder: calibrate the gate (at this accepted-wrong rate) and the "
                   "ex-ante skip from this run's traces every --update-every steps.")  # fmt: skip
@output_options
def agent(categories: tuple[str, ...], suite: str, mode: str, limit: int | None, offset: int, fleet_path: Path | None,
          step_limit: int, online: bool, update_every: int, seed: int, compare: tuple[Path, ...],
          examples_k: int, examples_from: Path | None, examples_ids: Path | None, index: str, max_tools: int | None,
          history_budget: int | None, learn_gate: float | None, out_dir: Path, db: Path | str | None,
          no_progress: bool) -> None:  # fmt: skip
    """Run BFCL v4 multi-turn items on the real tool classes; write results, summary and report.

    \b
    Examples:
      modelladder bench agent --category multi_turn_base --mode rung:smollm2-135m --out runs/agent-smol
      modelladder bench agent --category multi_turn_base --suite loops --limit 50 --out runs/loops
    """
    from rich.console import Console

    try:
        from modelladder.bench.agent.runner import AgentConfig, run_agent, validate
        from modelladder.bench.agent.table import print_agent_summary
        from modelladder.bench.config import BenchInputError
    except ModuleNotFoundError as exc:
        fail(f"the agent benchmark needs the `bench` extra: pip install 'modelladder[bench]' ({exc})")
    cfg = AgentConfig(categories=list(categories), out_dir=out_dir, suite=suite, mode=mode, limit=limit, offset=offset,
                      fleet_path=fleet_path, step_limit=step_limit, db=db, progress=not no_progress,
                      online=online, update_every=update_every, seed=seed, compare=list(compare),
                      examples_k=examples_k, examples_from=examples_from, examples_ids=examples_ids, index=index, max_tools=max_tools,
                      history_budget=history_budget, learn_gate=learn_gate)  # fmt: skip
    try:
        validate(cfg)
        if mode != "rung:reference":
            _probe(fleet_path)
        outcome = run_agent(cfg)
    except BenchInputError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted; rerun the same command to resume from {out_dir / 'results.jsonl'}", err=True
        )
        raise SystemExit(130) from None
    print_agent_summary(outcome.summary, Console(highlight=False))
    click.echo(f"{outcome.ran} run, {outcome.skipped} already done; results in {out_dir / 'results.jsonl'}, "
               f"report {out_dir / 'report.html'}")  # fmt: skip
