"""``modelladder serve``: the OpenAI-compatible gateway on uvicorn.

The command only checks its inputs (fleet file, key file, bind address, trace store) so
that a mistake is one clear line and exit code 2 before anything listens; the app itself
is :func:`modelladder.gateway.create_app`, which any ASGI server can run instead
(``uvicorn --factory modelladder.gateway:create_app``, configured by the environment).
"""

from __future__ import annotations

from pathlib import Path

import click

from modelladder.cli import main
from modelladder.cli._common import fail, probe_llama_or_fail
from modelladder.fleet import FleetError, load_fleet
from modelladder.gateway import GatewayConfig, create_app
from modelladder.gateway.auth import load_api_keys
from modelladder.gateway.otel import TelemetryConfigError, telemetry_for
from modelladder.gateway.server import BindError, check_bind
from modelladder.traces import TraceStore, TraceStoreError

__all__ = ["serve"]


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on."
)
@click.option(
    "--fleet",
    "fleet_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Fleet file (default: $MODELLADDER_FLEET or the bundled fleet).",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Trace store file (default: $MODELLADDER_HOME/traces.sqlite).",
)
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File with accepted API keys, one per line (also: $MODELLADDER_API_KEYS, $MODELLADDER_API_KEY_FILE).",
)
@click.option("--max-queue", default=16, show_default=True, type=click.IntRange(0, 10_000),
              help="Requests that may wait per rung before the gateway answers 429.")  # fmt: skip
@click.option("--queue-timeout", default=60.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Longest wait for a rung, in seconds, when the policy sets no latency budget.")  # fmt: skip
@click.option("--max-body-bytes", default=4 * 1024 * 1024, show_default=True, type=click.IntRange(1024, 1 << 30),
              help="Largest accepted request body.")  # fmt: skip
@click.option(
    "--preload/--no-preload", default=True, show_default=True, help="Load local models before listening."
)
@click.option(
    "--otlp-endpoint",
    default=None,
    metavar="URL",
    help="Send a span per run and attempt to this OTLP/HTTP collector (base URL, e.g. http://127.0.0.1:4318; "
    "default: $OTEL_EXPORTER_OTLP_ENDPOINT, else no tracing). Needs modelladder[otel].",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve(
    host: str,
    port: int,
    fleet_path: Path | None,
    db: Path | None,
    api_key_file: Path | None,
    max_queue: int,
    queue_timeout: float,
    max_body_bytes: int,
    preload: bool,
    otlp_endpoint: str | None,
    log_level: str,
) -> None:
    """Serve the OpenAI-compatible gateway (POST /v1/chat/completions, GET /v1/models, ...).

    Point a client at it: OpenAI(base_url="http://127.0.0.1:8080/v1", api_key=...).
    Without an API key configured it listens on loopback only.
    """
    import uvicorn

    try:
        fleet = load_fleet(fleet_path)
    except FleetError as exc:
        fail(str(exc))
    probe_llama_or_fail(fleet)
    try:
        keys = load_api_keys(api_key_file)
    except ValueError as exc:
        fail(str(exc))
    try:
        notice = check_bind(host, bool(keys))
    except BindError as exc:
        fail(str(exc))
    try:
        store = TraceStore(db)
    except TraceStoreError as exc:
        fail(str(exc))
    config = GatewayConfig(
        max_waiting=max_queue,
        queue_timeout_s=queue_timeout,
        max_body_bytes=max_body_bytes,
        api_keys=keys,
        preload=preload,
        otlp_endpoint=otlp_endpoint,
    )
    try:
        telemetry = telemetry_for(fleet, otlp_endpoint)
    except TelemetryConfigError as exc:
        store.close()
        fail(str(exc))
    app = create_app(fleet, store, config=config, telemetry=telemetry)
    shown = f"[{host}]" if ":" in host else host
    click.echo(notice, err=True)
    click.echo(
        f"modelladder gateway on http://{shown}:{port}/v1 -- fleet {fleet.source} "
        f"({', '.join(r.name for r in fleet.rungs)}), traces in {store.path}"
        + (" (spans to OTLP)" if telemetry.enabled else ""),
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
