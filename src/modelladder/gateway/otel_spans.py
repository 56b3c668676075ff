"""OpenTelemetry spans for one finished run, built after the fact from its :class:`StepResult`.

Why after the fact: the ladder stays free of any tracing code (it already reports every
attempt and returns every attempt in the result), and the only thing the gateway has to
remember while a run is in flight is the wall-clock time each attempt was judged (see
:class:`modelladder.gateway.otel.RunTrace`). Spans are then created with explicit start
and end times, so what a tracing backend shows is what happened, not when it was exported.

The shape, following the OpenTelemetry GenAI semantic conventions:

* the **run** is a SERVER span ``invoke_workflow ladder/<step>`` (``gen_ai.operation.name``
  ``invoke_workflow``, ``gen_ai.workflow.name`` the requested model id) under the caller's
  ``traceparent`` when it sent one. It carries no ``gen_ai.request.model`` and no
  ``gen_ai.usage.*``: backends (Langfuse, SigNoz) count a span with a model as an LLM call and
  add up usage over a trace, and the attempts below already carry those; the run's totals are
  ``modelladder.usage.*`` / ``modelladder.cost_usd``.
* each **attempt** is a ``chat <model>`` span, its child: CLIENT for a remote rung, INTERNAL
  for an in-process one, with ``gen_ai.request.model`` / ``gen_ai.response.model``, the
  token usage, ``gen_ai.usage.cost`` (Langfuse's cost field) and the ladder's own view under
  ``modelladder.*`` (rung, latency, cost, verdict, escalation reason).

No prompt or answer text is ever put on a span (the conventions make content opt-in; the
trace store has it for those allowed to read it).

This module imports OpenTelemetry at the top and is itself imported only when tracing is
configured (:mod:`modelladder.gateway.otel`), so a gateway without it never loads the SDK.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from modelladder.fleet_types import Fleet, Rung
from modelladder.ladder.outcome import Attempt, StepResult

__all__ = ["SpanBuilder", "otlp_exporter"]

#: ``gen_ai.provider.name`` per backend; others use the backend's name.
_PROVIDERS = {"openai": "openai", "llamacpp": "llama.cpp"}
_REMOTE = {"openai"}  # backends whose attempts leave the process (span kind CLIENT)


def otlp_exporter(traces_url: str | None) -> SpanExporter:
    """The OTLP/HTTP (protobuf) exporter: to ``traces_url`` when given, else wherever the
    standard ``OTEL_EXPORTER_OTLP_*`` variables say (the exporter reads them, headers too)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=traces_url) if traces_url else OTLPSpanExporter()


def _attrs(items: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes without the ``None`` values OpenTelemetry refuses."""
    return {k: v for k, v in items.items() if v is not None}


class SpanBuilder:
    """Turns finished runs into spans on a private :class:`TracerProvider` (the host
    application's global provider, if it has one, is left alone)."""

    def __init__(self, fleet: Fleet, exporter: SpanExporter, *, batch: bool = True, version: str = ""):
        """``batch``: export in the background (the gateway); ``False`` exports as each span
        ends (tests reading an in-memory exporter)."""
        resource = Resource.create({SERVICE_VERSION: version} if version else {})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: "modelladder"}))  # OTEL_SERVICE_NAME wins
        self.provider = TracerProvider(resource=resource)
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("modelladder.gateway", version or None)
        self.rungs: dict[str, Rung] = {r.name: r for r in fleet.rungs}

    def run(
        self,
        result: StepResult,
        *,
        model: str,
        start_ns: int,
        judged_ns: Sequence[int],
        carrier: Mapping[str, str],
        request: Mapping[str, Any],
    ) -> None:
        """Emit the run's span and one child per attempt. ``judged_ns``: when each attempt was
        judged (wall clock, ns); ``carrier``: the request's trace-context headers;
        ``request``: ``gen_ai.request.*`` values (max_tokens, temperature)."""
        end_ns = time.time_ns()
        resolved = result.outcome == "resolved"
        accepted = result.attempts[-1] if resolved and result.attempts else None
        run_attrs = _attrs({
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.workflow.name": model,
            "gen_ai.conversation.id": result.episode_id,
            "session.id": result.episode_id,  # Langfuse groups a conversation's runs by it
            "modelladder.run_id": result.run_id,
            "modelladder.step": result.step,
            "modelladder.step_key": result.step_key,
            "modelladder.episode_id": result.episode_id,
            "modelladder.request.model": model,
            "modelladder.outcome": result.outcome,
            "modelladder.unresolved_reason": getattr(result, "reason", None) or None,
            "modelladder.rung": accepted.rung if accepted else None,
            "modelladder.placement": accepted.placement if accepted else None,
            "modelladder.attempts": len(result.attempts),
            "modelladder.escalations": list(result.escalations),
            "modelladder.latency_s": result.latency_s,
            "modelladder.cost_usd": result.cost_usd,
            "modelladder.usage.input_tokens": result.prompt_tokens,
            "modelladder.usage.output_tokens": result.completion_tokens,
            "modelladder.config_digest": result.config_digest,
            "modelladder.gate_version": result.gate_version,
        })  # fmt: skip
        parent = propagate.extract(carrier)
        span = self.tracer.start_span(f"invoke_workflow {model}", context=parent, kind=SpanKind.SERVER,
                                      attributes=run_attrs, start_time=start_ns)  # fmt: skip
        if not resolved:
            span.set_attribute("error.type", getattr(result, "reason", "") or "unresolved")
            span.set_status(Status(StatusCode.ERROR, f"unresolved: {getattr(result, 'reason', '')}"))
        inside = trace.set_span_in_context(span, parent)
        cursor = start_ns
        for i, attempt in enumerate(result.attempts):
            # judged_ns has one entry per attempt (the ladder reports each); reconstruct the
            # rest from latencies if a hook was ever skipped, never drop an attempt
            judged = judged_ns[i] if i < len(judged_ns) else cursor + int(attempt.latency_s * 1e9)
            # attempts run one after another: none began before the previous one was judged
            begun = max(cursor, judged - int(attempt.latency_s * 1e9))
            self._attempt(attempt, result, request, inside, begun, min(judged, end_ns))
            cursor = judged
        span.end(end_time=max(end_ns, cursor))

    def _attempt(self, a: Attempt, result: StepResult, request: Mapping[str, Any], context: Any,
                 start_ns: int, end_ns: int) -> None:  # fmt: skip
        rung = self.rungs.get(a.rung)
        backend = rung.backend if rung else None
        model = (rung.model if rung and rung.model else None) or a.rung
        server = urlsplit(rung.url) if rung and rung.url else None
        verdict = a.verdict
        attrs = _attrs({
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": _PROVIDERS.get(backend or "", backend),
            "gen_ai.system": _PROVIDERS.get(backend or "", backend),  # the name before semconv 1.37
            "gen_ai.request.model": model,
            "gen_ai.response.model": model if a.error is None else None,
            "gen_ai.request.max_tokens": request.get("max_tokens"),
            "gen_ai.request.temperature": request.get("temperature"),
            "gen_ai.conversation.id": result.episode_id,
            "gen_ai.usage.input_tokens": a.prompt_tokens,
            "gen_ai.usage.output_tokens": a.completion_tokens,
            "gen_ai.usage.cache_read.input_tokens": a.cached_prompt_tokens or None,
            "gen_ai.usage.cost": a.cost_usd,  # Langfuse's cost; modelladder.cost_usd is the same figure
            "gen_ai.response.finish_reasons": [a.finish_reason] if a.finish_reason else None,
            "server.address": server.hostname if server else None,
            "server.port": server.port if server else None,
            "error.type": a.error,
            "modelladder.run_id": result.run_id,
            "modelladder.step": result.step,
            "modelladder.episode_id": result.episode_id,
            "modelladder.rung": a.rung,
            "modelladder.rung.backend": backend,
            "modelladder.placement": a.placement,
            "modelladder.attempt.index": a.index,
            "modelladder.latency_s": a.latency_s,
            "modelladder.cost_usd": a.cost_usd,
            "modelladder.accepted": a.accepted,
            "modelladder.escalation_reason": a.escalation_reason,
            "modelladder.verdict": None if verdict is None else ("ok" if verdict.ok else verdict.reason or "failed"),
            "modelladder.decision": a.decision,
            "modelladder.repeated_call": a.repeated_call or None,
            "modelladder.forced_answer": a.forced_answer or None,
            "modelladder.confidence.mean_logprob": a.confidence.mean_logprob if a.confidence else None,
            "modelladder.confidence.min_logprob": a.confidence.min_logprob if a.confidence else None,
        })  # fmt: skip
        kind = SpanKind.CLIENT if backend in _REMOTE else SpanKind.INTERNAL
        span = self.tracer.start_span(f"chat {model}", context=context, kind=kind, attributes=attrs,
                                      start_time=start_ns)  # fmt: skip
        if a.error is not None:  # the call itself failed; a contract failure is the ladder's verdict
            span.set_status(Status(StatusCode.ERROR, (a.error_detail or a.error)[:500]))
        span.end(end_time=end_ns)

    def shutdown(self) -> None:
        """Export what is queued and stop (the gateway's shutdown)."""
        self.provider.shutdown()
