"""``modelladder ui``: the dashboard over a trace store, on loopback, read-only.

Why a command of its own next to ``serve``'s ``/ui``: the store outlives the gateway (a copy
from production, a PostgreSQL replica, a benchmark's traces), and looking at it should need
no fleet, no model and no key. It binds to 127.0.0.1 only and serves GETs only; the store is
opened with ``create=False`` so a mistyped path is an error, not a new empty store.
"""

from __future__ import annotations

from pathlib import Path

import click

from modelladder.cli import main
from modelladder.cli._common import TRACE_STORE, TRACE_STORE_HELP, fail

__all__ = ["ui"]


@main.command("ui")
@click.option("--db", type=TRACE_STORE, default=None, help=TRACE_STORE_HELP)
@click.option("--port", default=8090, show_default=True, type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 (0: any free port).")  # fmt: skip
@click.option(
    "--fleet",
    "fleet_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Fleet file whose largest rung prices the frontier-only cost (default: none; the priciest "
    "cloud rung in the store, at its recorded costs).",
)
@click.option(
    "--log-level", default="warning", show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)  # fmt: skip
def ui(db: Path | str | None, port: int, fleet_path: Path | None, log_level: str) -> None:
    """Serve the dashboard for a trace store on http://127.0.0.1:PORT/ui (read-only, loopback)."""
    import uvicorn

    from modelladder.fleet import FleetError, load_fleet
    from modelladder.gateway.ui import Frontier, dashboard_app
    from modelladder.traces import TraceStore, TraceStoreError

    frontier = None
    if fleet_path is not None:
        try:
            fleet = load_fleet(fleet_path)
        except FleetError as exc:
            fail(str(exc))
        largest = max(fleet.rungs, key=lambda r: r.params)
        frontier = Frontier(largest.name, largest.cost)
    try:
        store = TraceStore(db, create=False)
    except (TraceStoreError, OSError) as exc:
        fail("cannot open the trace store: " + " ".join(str(exc).split()))
    click.echo(f"modelladder dashboard on http://127.0.0.1:{port}/ui -- traces in {store.path}", err=True)
    try:
        uvicorn.run(dashboard_app(store, frontier), host="127.0.0.1", port=port, log_level=log_level)
    finally:
        store.close()
