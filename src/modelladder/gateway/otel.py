"""OpenTelemetry for the gateway: on when an OTLP endpoint is configured, free when not.

Configuration is the standard one, so a deployment that already exports to a collector,
Jaeger, Phoenix or Langfuse needs nothing new: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), ``OTEL_EXPORTER_OTLP_HEADERS`` for a backend's
key, ``OTEL_SERVICE_NAME``, ``OTEL_SDK_DISABLED``. ``modelladder serve --otlp-endpoint URL``
(:attr:`GatewayConfig.otlp_endpoint`) sets the same base URL for one gateway without touching
the environment. Only OTLP over HTTP with protobuf is shipped (``modelladder[otel]``); a
configuration asking for anything else is one clear :class:`TelemetryConfigError`.

Why a separate switch object: when nothing is configured :func:`telemetry_for` returns
:data:`OFF`, whose ``begin`` returns ``None``; the request path then does one ``is None``
test and never imports OpenTelemetry (:mod:`modelladder.gateway.otel_spans` holds every
import of it). When tracing is on, :class:`RunTrace` notes the wall-clock time each attempt
was judged (through the ladder's ``on_attempt`` hook) and the spans are built from the
finished :class:`StepResult`, so the ladder knows nothing of tracing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from modelladder.ladder.outcome import Attempt, StepResult

if TYPE_CHECKING:
    from modelladder.fleet_types import Fleet
    from modelladder.gateway.otel_spans import SpanBuilder

__all__ = ["OFF", "RunTrace", "Telemetry", "TelemetryConfigError", "otlp_endpoint", "telemetry_for"]

log = logging.getLogger("modelladder.gateway.otel")

_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
_CONTEXT_HEADERS = ("traceparent", "tracestate", "baggage")


class TelemetryConfigError(ValueError):
    """The tracing configuration cannot work; the message says what to change."""


def _check_url(url: str, where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TelemetryConfigError(f"{where} {url!r} is not an http(s) URL (e.g. http://127.0.0.1:4318)")


def otlp_endpoint(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """Where spans go, or ``None`` for tracing off. ``explicit`` (the serve flag) is a base URL
    like ``OTEL_EXPORTER_OTLP_ENDPOINT``; the traces path is added to it. Returns the traces URL
    for an explicit endpoint and ``""`` when the environment configures the exporter itself."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    if "none" in exporters and explicit is None:
        return None
    configured = explicit is not None or any(env.get(v, "").strip() for v in _ENDPOINT_VARS)
    if not configured:
        return None
    for var in _PROTOCOL_VARS:
        protocol = env.get(var, "").strip()
        if protocol and protocol != "http/protobuf":
            raise TelemetryConfigError(
                f"{var}={protocol!r}: the gateway exports OTLP over HTTP with protobuf only; "
                "set it to http/protobuf (the collector's port 4318) or unset it"
            )
    if explicit is not None:
        _check_url(explicit, "--otlp-endpoint")
        return explicit.rstrip("/") + "/v1/traces"
    for var in _ENDPOINT_VARS:
        if env.get(var, "").strip():
            _check_url(env[var].strip(), var)
    return ""


class RunTrace:
    """One request's tracing state while its run is in flight: when it arrived, the caller's
    trace context, and when each attempt was judged."""

    def __init__(self, builder: SpanBuilder, headers: Mapping[str, str], model: str):
        self.builder, self.model = builder, model
        self.start_ns = time.time_ns()
        self.carrier = {k: headers[k] for k in _CONTEXT_HEADERS if k in headers}
        self.judged_ns: list[int] = []

    def hook(self, inner: Callable[[Attempt], None]) -> Callable[[Attempt], None]:
        """``inner`` (the metrics hook), noting the time first: the ladder's ``on_attempt``."""

        def on_attempt(attempt: Attempt) -> None:
            self.judged_ns.append(time.time_ns())
            inner(attempt)

        return on_attempt

    def finish(self, result: StepResult, request: Mapping[str, Any]) -> None:
        """The run is over: emit its spans (queued for the background exporter). Tracing never
        fails a request: a span that cannot be built is logged and dropped."""
        try:
            self.builder.run(result, model=self.model, start_ns=self.start_ns, judged_ns=self.judged_ns,
                             carrier=self.carrier, request=request)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 -- the answer matters more than its span
            log.warning("could not build the spans of run %s: %s: %s", result.run_id, type(exc).__name__, exc)


class Telemetry:
    """The gateway's tracing switch. ``builder=None``: off (:data:`OFF`)."""

    def __init__(self, builder: SpanBuilder | None = None):
        self.builder = builder

    @property
    def enabled(self) -> bool:
        return self.builder is not None

    def begin(self, headers: Mapping[str, str], model: str) -> RunTrace | None:
        """A request arrived: its :class:`RunTrace`, or ``None`` with tracing off."""
        return None if self.builder is None else RunTrace(self.builder, headers, model)

    def shutdown(self) -> None:
        if self.builder is not None:
            self.builder.shutdown()

    @classmethod
    def with_exporter(cls, fleet: Fleet, exporter: Any, *, batch: bool = True) -> Telemetry:
        """Tracing into any OpenTelemetry ``SpanExporter`` (tests: the SDK's in-memory one)."""
        from modelladder.gateway.otel_spans import SpanBuilder

        return cls(SpanBuilder(fleet, exporter, batch=batch, version=_version()))


OFF = Telemetry()


def _version() -> str:
    try:
        return metadata.version("modelladder")
    except metadata.PackageNotFoundError:
        return ""


def telemetry_for(fleet: Fleet, explicit: str | None = None) -> Telemetry:
    """Tracing as configured (:func:`otlp_endpoint`): :data:`OFF`, or spans to OTLP/HTTP."""
    url = otlp_endpoint(explicit)
    if url is None:
        return OFF
    try:
        from modelladder.gateway.otel_spans import otlp_exporter

        exporter = otlp_exporter(url or None)
    except ImportError as exc:
        raise TelemetryConfigError(
            f"an OTLP endpoint is configured but OpenTelemetry is not installed ({exc.name}): "
            "pip install 'modelladder[otel]', or set OTEL_SDK_DISABLED=true"
        ) from None
    return Telemetry.with_exporter(fleet, exporter)
