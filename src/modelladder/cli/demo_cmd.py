"""``modelladder demo``: the bundled support-agent scenario through the ladder."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelladder.backends.base import BackendError
from modelladder.cli import main
from modelladder.cli._common import TRACE_STORE, TRACE_STORE_HELP, fail, probe_llama_or_fail
from modelladder.contracts import Sql
from modelladder.fleet import FleetError, load_fleet
from modelladder.ladder import Ladder, Resolved, Unresolved

__all__ = ["demo"]


def _short(reason: str) -> str:
    """``contract:check_failed:grounded`` -> ``grounded``: the last part says enough in a table."""
    return reason.rsplit(":", 1)[-1]


def _verdict(result: Resolved | Unresolved) -> str:
    chain = ", ".join(_short(a.escalation_reason) for a in result.attempts if a.escalation_reason)
    if isinstance(result, Resolved):
        return "[green]ok[/]" + (f" [dim](after {chain})[/]" if chain else "")
    return f"[red]unresolved[/] [dim]({chain or result.reason})[/]"


def _answer(result: Resolved | Unresolved, contract: Any = None) -> str:
    if not isinstance(result, Resolved):
        return "-"
    value = result.value
    if isinstance(contract, Sql) and contract.connection is not None:
        # the accepted query, run on the demo's database (read-only step: SELECT only)
        rows = contract.connection.execute(str(value)).fetchall()
        shown = ", ".join(str(r[0]) if len(r) == 1 else str(tuple(r)) for r in rows[:4])
        return f"{value}\n-> {shown}{' ...' if len(rows) > 4 else ''} ({len(rows)} rows)"
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, list):  # tool calls
        return (
            "; ".join(
                f"{c['name']}({', '.join(f'{k}={v!r}' for k, v in c['arguments'].items())})" for c in value
            )
            or "(declined)"
        )
    return str(value)


@main.command("demo")
@click.option(
    "--fleet", "fleet_path", type=click.Path(dir_okay=False), help="fleet.toml (default: the bundled fleet)"
)
@click.option("--db", type=TRACE_STORE, help=TRACE_STORE_HELP)
def demo(fleet_path: str | None, db: Path | str | None) -> None:
    """Run the bundled agent scenario (route, extract, call a tool, decline, query the shop's
    database) through the ladder."""
    from modelladder.demo.scenario import STEPS, load_inputs
    from modelladder.traces import TraceStore, TraceStoreError

    console = Console(width=None if Console().is_terminal else 150)
    try:
        fleet = load_fleet(fleet_path)
    except FleetError as exc:
        fail(str(exc))
    probe_llama_or_fail(fleet)
    try:
        store = TraceStore(db)
    except TraceStoreError as exc:
        fail(str(exc))
    ladder = Ladder(fleet, store=store)
    inputs = load_inputs()

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        usable = 0
        for rung in fleet.rungs:
            if rung.backend == "reference":
                continue
            task = progress.add_task(f"loading {rung.name}", total=None)
            try:
                ladder.backend(rung)
                usable += 1
            except BackendError as exc:
                console.print(f"[yellow]warning:[/] rung {rung.name} unavailable: {exc}")
            progress.remove_task(task)
        if usable == 0:
            fail("no rung of the fleet could be loaded; check the paths/URLs in the fleet file")
        task = progress.add_task("running steps", total=len(inputs))
        results: list[tuple[str, str, Resolved | Unresolved]] = []
        for inp in inputs:
            progress.update(task, description=f"running {inp.step}")
            results.append(
                (
                    inp.step,
                    inp.messages[-1]["content"],
                    ladder.run(STEPS[inp.step], inp.messages, tags={"source": "demo"}),
                )
            )
            progress.advance(task)

    for step in STEPS:
        rows = [(text, r) for s, text, r in results if s == step]
        if not rows:
            continue
        contract = STEPS[step].contract
        kind = contract.kind if contract is not None else "free text"
        table = Table(title=f"step: {step}  (contract: {kind})", title_justify="left", expand=True)
        for col, kw in (
            ("input", {"ratio": 3}),
            ("answer", {"ratio": 3}),
            ("rung", {}),
            ("tries", {"justify": "right"}),
            ("verdict", {"ratio": 2}),
            ("latency", {"justify": "right"}),
            ("tokens", {"justify": "right"}),
            ("cost $", {"justify": "right"}),
        ):
            table.add_column(col, overflow="fold", **kw)
        for text, r in rows:
            table.add_row(
                text,
                _answer(r, contract),
                r.rung or "-",
                str(len(r.attempts)),
                _verdict(r),
                f"{r.latency_s:.2f}s",
                f"{r.prompt_tokens}+{r.completion_tokens}",
                f"{r.cost_usd:.6f}",
            )
        console.print(table)

    all_results = [r for _, _, r in results]
    edge = [r for r in all_results if isinstance(r, Resolved) and r.placement == "edge"]
    unresolved = [r for r in all_results if isinstance(r, Unresolved)]
    lat = sorted(r.latency_s for r in all_results)
    reasons = Counter(
        reason.split(":", 1)[0] + (":" + reason.split(":")[-1] if ":" in reason else "")
        for r in all_results
        for reason in r.escalations
    )
    p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
    console.print()
    console.print(
        f"[bold]answered at the edge:[/] {len(edge)}/{len(all_results)} ({len(edge) / len(all_results):.0%})"
    )
    has_cloud = any(r.placement == "cloud" for r in fleet.rungs)
    if unresolved:
        where = "" if has_cloud else "; no cloud rung is configured, so these would have left the edge"
        console.print(f"[bold]unresolved:[/] {len(unresolved)}{where}")
    console.print(
        "[bold]escalations by reason:[/] "
        + (", ".join(f"{k} {v}" for k, v in reasons.most_common()) or "none")
    )
    console.print(
        f"[bold]latency:[/] p50 {statistics.median(lat):.2f}s  p95 {p95:.2f}s   "
        f"[bold]cost:[/] ${sum(r.cost_usd for r in all_results):.6f}"
    )
    console.print(
        f"[bold]traces:[/] {len(all_results)} runs written to {store.path}  (see `modelladder traces list`)"
    )
    store.close()
