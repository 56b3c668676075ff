"""The gateway application: ``create_app`` builds a FastAPI app around one :class:`Ladder`.

Why this shape: everything a request needs lives on one :class:`Gateway` object made by
the factory, so the app is importable and runnable by any ASGI server
(``uvicorn --factory modelladder.gateway:create_app``) and several replicas can sit behind
a load balancer; the only shared state is the trace store (SQLite in WAL mode, safe for
several processes). Ladder runs block, so they go to worker threads, gated by the per-rung
queues of :mod:`modelladder.gateway.queueing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from starlette.responses import Response, StreamingResponse

from modelladder.backends.base import Backend, BackendError
from modelladder.fleet import Fleet, load_fleet
from modelladder.gateway import errors, queueing, shaping, traces_api, translate, ui
from modelladder.gateway.auth import Guard, key_checker, load_api_keys
from modelladder.gateway.errors import APIError
from modelladder.gateway.health import LOSS_REASONS, TraceLosses, cooling_report
from modelladder.gateway.metrics import Metrics
from modelladder.gateway.otel import RunTrace, Telemetry, telemetry_for
from modelladder.gateway.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    ErrorBody,
    FeedbackAck,
    FeedbackRequest,
    ModelCard,
    ModelList,
)
from modelladder.ladder.cooldown import CooldownPolicy
from modelladder.ladder.runner import BackendFactory, Ladder, derive_episode_id
from modelladder.traces import TraceStore, TraceStoreError, UnknownRunError

__all__ = ["Gateway", "GatewayConfig", "ROUTES", "create_app"]

log = logging.getLogger("modelladder.gateway")

ROUTES = ("/v1/chat/completions", "/v1/models", "/v1/feedback", "/v1/traces", "/healthz", "/metrics")


def _prompt_caches() -> list[tuple[str, dict[str, int]]]:
    """The prompt-cache counters of every model resident in this process (read at scrape time;
    imported here so a gateway over remote rungs only never loads llama.cpp)."""
    import sys

    if "modelladder.backends.loaded_model" not in sys.modules:
        return []
    from modelladder.backends.loaded_model import loaded_models

    return [(m.path.name, m.prompt_cache.stats.as_dict()) for m in loaded_models()]


@dataclass(frozen=True)
class GatewayConfig:
    """Limits and switches. ``api_keys=None`` reads them from the environment / ``key_file``
    (see :func:`~modelladder.gateway.auth.load_api_keys`); ``()`` means no keys (loopback only)."""

    max_waiting: int = 16  # per queue, beyond the requests running
    remote_concurrency: int = 8  # concurrent requests per remote (openai) rung
    queue_timeout_s: float = 60.0  # longest wait for a slot when the policy sets no latency budget
    max_body_bytes: int = 4 * 1024 * 1024
    max_tokens_limit: int = 4096
    default_max_tokens: int = 256
    api_keys: tuple[str, ...] | None = None
    key_file: str | None = None
    preload: bool = False  # load local models at startup instead of on first use
    # a rung whose endpoint fails this many times in a row is skipped for cooldown_s (doubling
    # up to cooldown_max_s); 0: only a Retry-After cools it (modelladder.ladder.cooldown)
    cooldown_after_failures: int = 5
    cooldown_s: float = 10.0
    cooldown_max_s: float = 120.0
    # OTLP/HTTP base URL for spans (modelladder.gateway.otel); None: the OTEL_* environment decides
    otlp_endpoint: str | None = None


def _tenant(request: Request) -> str | None:
    """The caller's tenant, set by the Guard (``None``: no keys configured)."""
    return getattr(request.state, "tenant", None)


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(body, ensure_ascii=False).encode(), status, headers, "application/json")


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has already been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class Gateway:
    """One gateway: the ladder, its queues and metrics, and the request handlers."""

    def __init__(self, ladder: Ladder, store: TraceStore, config: GatewayConfig, owns_store: bool,
                 telemetry: Telemetry | None = None, losses: TraceLosses | None = None):  # fmt: skip
        self.ladder, self.store, self.config, self.owns_store = ladder, store, config, owns_store
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self.losses = losses or TraceLosses()
        self.fleet: Fleet = ladder.fleet
        self.queues = queueing.Queues(
            self.fleet.rungs, max_waiting=config.max_waiting, remote_concurrency=config.remote_concurrency
        )
        gate = ladder.gate
        self.metrics = Metrics(
            lambda: [(q.name, q.waiting, q.running) for q in self.queues.all],
            _prompt_caches,
            rungs=ladder.cooldowns.health,
            traces_lost=lambda: {r: self.losses.total.get(r, 0) for r in LOSS_REASONS},
            gates=getattr(gate, "status", dict),
            skips=getattr(gate, "skip_status", dict),
            shadow_rates=lambda: {
                **{"default": self.fleet.default_policy.shadow_rate},
                **{name: p.shadow_rate for name, p in self.fleet.steps.items()},
            },
        )
        self.limiter = anyio.CapacityLimiter(sum(q.concurrency for q in self.queues.all) + 2)

    # -- chat completions -------------------------------------------------------------------
    async def chat(self, req: ChatCompletionRequest, request: Request) -> Response:
        t0 = time.perf_counter()
        cfg = self.config
        plan = translate.plan(
            req, self.fleet, max_tokens_limit=cfg.max_tokens_limit, default_max_tokens=cfg.default_max_tokens
        )
        tenant = _tenant(request)
        plan.tags.pop(
            traces_api.TENANT_TAG, None
        )  # only the Guard names a tenant, never the caller's metadata
        if tenant is not None:
            plan.tags[traces_api.TENANT_TAG] = tenant
        spans = self.telemetry.begin(request.headers, req.model)  # None: tracing off
        queue = self.queues.for_rung(plan.entry)
        budget = plan.policy.latency_budget_s
        conversation = derive_episode_id(plan.messages)  # the queue prefers the resident one
        if not queue.try_acquire(conversation):
            watcher = asyncio.ensure_future(_disconnected(request))
            try:
                wait_s = min(budget, cfg.queue_timeout_s) if budget else cfg.queue_timeout_s
                got = await queueing.acquire(queue, wait_s, watcher, conversation)
            except (queueing.QueueFull, queueing.QueueTimeout) as exc:
                full = isinstance(exc, queueing.QueueFull)
                self.metrics.rejections.inc(queue.name, "full" if full else "timeout")
                raise APIError(
                    429,
                    f"rung {queue.name!r} is busy, {exc}; retry after {exc.retry_after_s}s",
                    code="queue_full" if full else "queue_timeout",
                    headers={"retry-after": str(exc.retry_after_s)},
                ) from None
            finally:
                watcher.cancel()
            if not got:  # the client left while queued: nothing was started, nothing recorded
                self.metrics.cancelled.inc(queue.name)
                return Response(status_code=499)
        policy = plan.policy
        if budget is not None:  # the queue wait counts against the step's latency budget
            policy = dataclasses.replace(
                policy, latency_budget_s=max(budget - (time.perf_counter() - t0), 1e-3)
            )
        run = partial(
            self.ladder.run, plan.step, plan.messages, policy=policy, tags=plan.tags, run_id=uuid.uuid4().hex,
            params=plan.params, on_attempt=spans.hook(self.metrics.on_attempt) if spans else self.metrics.on_attempt,
        )  # fmt: skip
        if plan.streams_live:
            return await self._live(plan, run, queue, t0, spans)
        started = time.perf_counter()
        try:
            result = await anyio.to_thread.run_sync(run, limiter=self.limiter)
        except TraceStoreError as exc:
            raise APIError(
                503, f"the trace store refused the run: {exc}", code="trace_store_unavailable"
            ) from None
        except ValueError as exc:
            raise APIError(400, str(exc), code="invalid_request") from None
        finally:
            queue.release(time.perf_counter() - started)
        return self._finished(plan, result, t0, spans)

    async def _live(self, plan: translate.Plan, run: Any, queue: queueing.RungQueue, t0: float,
                    spans: RunTrace | None = None) -> Response:  # fmt: skip
        """Stream free text as it is decoded (``Plan.streams_live``). The status line waits
        for the first piece of text: a run that ends before any (an error, a call, an empty
        answer that escalates) is answered exactly as a buffered one, with its real status."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        started = time.perf_counter()

        def on_text(rung: str, text: str) -> None:
            loop.call_soon_threadsafe(events.put_nowait, ("text", (rung, text)))

        async def work() -> Any:
            try:
                return await anyio.to_thread.run_sync(partial(run, on_text=on_text), limiter=self.limiter)
            finally:
                queue.release(time.perf_counter() - started)

        task = asyncio.ensure_future(work())
        task.add_done_callback(lambda _t: events.put_nowait(("done", None)))
        kind, first = await events.get()
        if kind == "done":
            try:
                result = task.result()
            except TraceStoreError as exc:
                raise APIError(
                    503, f"the trace store refused the run: {exc}", code="trace_store_unavailable"
                ) from None
            except ValueError as exc:
                raise APIError(400, str(exc), code="invalid_request") from None
            return self._finished(plan, result, t0, spans)
        rung, text = first
        run_id = run.keywords["run_id"]
        live = shaping.LiveStream(run_id, rung, plan)
        headers = {"x-modelladder-run-id": run_id, "x-modelladder-step": plan.step.name,
                   "x-modelladder-rung": rung, "x-modelladder-streamed": "live", "cache-control": "no-cache"}  # fmt: skip
        if plan.tags.get("ignored"):
            headers["x-modelladder-ignored"] = plan.tags["ignored"]

        async def body() -> AsyncIterator[bytes]:
            yield live.start() + live.delta(text)
            while True:
                kind, item = await events.get()
                if kind == "text":
                    if item[0] != rung:  # only if the streaming attempt crashed: never mix two answers
                        continue
                    chunk = live.delta(item[1])
                    if chunk:
                        yield chunk
                    continue
                try:
                    result = task.result()
                except Exception as exc:  # noqa: BLE001 -- the status line is gone: say it in the stream
                    yield live.fail(
                        APIError(500, f"the run failed after streaming began: {exc}", "internal_error")
                    )
                    return
                self._count(plan, result, t0, spans)
                if result.outcome != "resolved":  # cannot happen by Plan.streams_live's rules; never hide it
                    yield live.fail(shaping.unresolved_error(result))
                elif result.rung != rung or not result.text.strip().startswith(live.sent):
                    yield live.fail(
                        APIError(
                            500,
                            "the streamed attempt was not the accepted one; retry without stream",
                            "stream_mismatch",
                        )
                    )
                else:
                    yield live.finish(result)
                return

        return StreamingResponse(body(), 200, headers, media_type="text/event-stream")

    def _count(self, plan: translate.Plan, result: Any, t0: float, spans: RunTrace | None = None) -> None:
        self.metrics.runs.inc(plan.step.name, result.outcome)
        self.metrics.request_latency.observe(time.perf_counter() - t0, result.rung or "none")
        if spans is not None:
            spans.finish(
                result, {"max_tokens": plan.params.max_tokens, "temperature": plan.params.temperature}
            )

    def _finished(
        self, plan: translate.Plan, result: Any, t0: float, spans: RunTrace | None = None
    ) -> Response:
        """A finished run as a response: the body (or an SSE replay), or the error."""
        self._count(plan, result, t0, spans)
        if result.outcome != "resolved":
            cooling = self.ladder.cooldowns.cooling()
            raise shaping.unresolved_error(result, min(cooling.values()) if cooling else None)
        headers = shaping.headers_for(result)
        if plan.stream:
            headers["cache-control"] = "no-cache"
            body = b"".join(shaping.stream_chunks(result, plan))
            return Response(body, 200, headers, "text/event-stream")
        return _json(shaping.completion_body(result, plan), headers=headers)

    # -- the rest ---------------------------------------------------------------------------
    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [self._card(m) for m in translate.model_ids(self.fleet)]}

    @staticmethod
    def _card(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "modelladder"}

    def model(self, model_id: str) -> dict[str, Any]:
        if model_id not in translate.model_ids(self.fleet):
            translate.resolve_model(self.fleet, model_id)  # raises the 404
        return self._card(model_id)

    async def feedback(self, fb: FeedbackRequest, tenant: str | None = None) -> dict[str, Any]:
        run_id = fb.run_id.removeprefix("chatcmpl-")
        if tenant is not None:  # another tenant's run is answered as a missing one
            await anyio.to_thread.run_sync(traces_api.owned, self.store, tenant, run_id)
        try:
            await anyio.to_thread.run_sync(self.store.record_feedback, run_id, fb.success, fb.note)
        except UnknownRunError:
            raise APIError(
                404, f"no run with id {run_id!r} is recorded", code="run_not_found", param="run_id"
            ) from None
        except TraceStoreError as exc:
            raise APIError(
                503, f"the trace store refused the feedback: {exc}", code="trace_store_unavailable"
            ) from None
        return {"object": "feedback", "run_id": run_id, "success": fb.success}

    def health(self) -> dict[str, Any]:
        """Always 200 while the gateway serves; ``degraded`` while a rung is cooling down or the
        trace store refuses to record (:mod:`modelladder.gateway.health`)."""
        cooling = cooling_report(self.ladder.cooldowns)
        traces = self.losses.report()
        return {
            "status": "degraded" if cooling or traces["failing"] else "ok",
            "rungs": [r.name for r in self.fleet.rungs],
            "queues": {q.name: {"waiting": q.waiting, "running": q.running} for q in self.queues.all},
            "cooling": cooling,
            "traces": traces,
        }

    def preload(self) -> None:
        for rung in self.fleet.rungs:
            if rung.backend == "llamacpp":
                t0 = time.perf_counter()
                try:
                    self.ladder.backend(rung)
                    log.info("loaded %s in %.1fs", rung.name, time.perf_counter() - t0)
                except BackendError as exc:  # the ladder will escalate past it; say so now
                    log.warning("cannot load rung %s: %s", rung.name, exc)


_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody, "description": d}
    for s, d in {
        400: "Malformed request, invalid schema, unknown tool in tool_choice, functions mixed with tools",
        401: "Missing or wrong API key",
        403: "No API key configured and the client is not on loopback",
        404: "Unknown model or run",
        413: "Request body too large",
        422: "Every rung failed the contract (the attempts are listed)",
        429: "The rung's queue is full (code queue_full) or the wait for a slot timed out (queue_timeout); see Retry-After",
        503: "No rung is reachable",
    }.items()
}


def create_app(
    fleet: Fleet | None = None,
    store: TraceStore | None = None,
    *,
    config: GatewayConfig | None = None,
    backends: Mapping[str, Backend] | None = None,
    backend_factory: BackendFactory | None = None,
    telemetry: Telemetry | None = None,
) -> FastAPI:
    """The gateway as an ASGI app. ``fleet``: default ``load_fleet()`` (``$MODELLADDER_FLEET``
    or the bundled fleet); ``store``: default the trace store in ``data_dir()``;
    ``backends``/``backend_factory`` are passed to the :class:`Ladder` (tests, benchmarks);
    ``telemetry``: default spans to the OTLP endpoint configured (none: off, see
    :mod:`modelladder.gateway.otel`)."""
    config = config or GatewayConfig()
    fleet = fleet or load_fleet()
    telemetry = telemetry if telemetry is not None else telemetry_for(fleet, config.otlp_endpoint)
    keys = config.api_keys if config.api_keys is not None else load_api_keys(config.key_file)
    owns_store = store is None
    store = store if store is not None else TraceStore()
    from modelladder.learning import StoreGate  # the calibrated gate per step, new versions picked up live

    losses = TraceLosses()
    cooldown = CooldownPolicy(config.cooldown_after_failures, config.cooldown_s, config.cooldown_max_s)
    learned = StoreGate(store)  # the gate and the ex-ante skip, both from the store's calibrations
    ladder = Ladder(fleet, store=store, backends=backends, backend_factory=backend_factory,
                    gate=learned, skip=learned, cooldown=cooldown, on_record=losses)  # fmt: skip
    gw = Gateway(ladder, store, config, owns_store, telemetry, losses)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not keys:
            log.warning("no API key configured: serving loopback clients only (set MODELLADDER_API_KEYS)")
        if config.preload:
            await anyio.to_thread.run_sync(gw.preload)
        yield
        gw.telemetry.shutdown()  # export the spans still queued
        if gw.owns_store:
            gw.store.close()

    app = FastAPI(
        title="modelladder gateway",
        version="1",
        description="OpenAI-compatible chat completions on the smallest model that satisfies the request's contract.",
        lifespan=lifespan,
    )
    app.state.gateway = gw
    errors.install(app)

    def observe(path: str, status: int) -> None:
        route = path if path in ROUTES else "other"
        for prefix, template in (
            ("/v1/models/", "/v1/models/{model}"),
            ("/v1/traces/", "/v1/traces/{run_id}"),
            ("/ui", "/ui"),
        ):
            if path.startswith(prefix):
                route = template
        gw.metrics.requests.inc(route, str(status))

    app.add_middleware(Guard, keys=keys, max_body_bytes=config.max_body_bytes, observe=observe)
    # the dashboard (/ui): "frontier-only" prices the same runs on the fleet's largest rung
    largest = max(fleet.rungs, key=lambda r: r.params)
    ui.install(app, ui.Dashboard(store, ui.Frontier(largest.name, largest.cost),
                                 key_checker(keys) if keys else None))  # fmt: skip

    @app.post(
        "/v1/chat/completions",
        response_model=None,
        responses={200: {"model": ChatCompletion, "content": {"text/event-stream": {}}}, **_ERRORS},
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        """Run the request on the smallest rung whose answer satisfies its contract."""
        return await gw.chat(body, request)

    @app.get("/v1/models", response_model=None, responses={200: {"model": ModelList}})
    async def list_models() -> Response:
        """The default ladder, each named step (``ladder/<step>``), and each rung."""
        return _json(gw.models())

    @app.get(
        "/v1/models/{model_id:path}", response_model=None, responses={200: {"model": ModelCard}, **_ERRORS}
    )
    async def get_model(model_id: str) -> Response:
        return _json(gw.model(model_id))

    @app.post("/v1/feedback", response_model=None, responses={200: {"model": FeedbackAck}, **_ERRORS})
    async def feedback(body: FeedbackRequest, request: Request) -> Response:
        """Record whether a step's answer worked out for the agent (lands in the trace store)."""
        return _json(await gw.feedback(body, _tenant(request)))

    @app.get("/v1/traces", response_model=None, responses=_ERRORS)
    async def list_traces(
        request: Request, limit: int = 20, step: str | None = None, outcome: str | None = None
    ) -> Response:
        """The caller's most recent runs (its API key's; every run when no key is configured)."""
        return _json(
            await anyio.to_thread.run_sync(
                traces_api.list_runs, gw.store, _tenant(request), limit, step, outcome
            )
        )

    @app.get("/v1/traces/{run_id}", response_model=None, responses=_ERRORS)
    async def get_trace(run_id: str, request: Request) -> Response:
        """One of the caller's runs with every attempt (404 for another key's run)."""
        return _json(await anyio.to_thread.run_sync(traces_api.get_run, gw.store, _tenant(request), run_id))

    @app.get("/healthz", response_model=None)
    async def healthz() -> Response:
        return _json(gw.health())

    @app.get("/metrics", response_model=None)
    async def metrics() -> Response:
        return Response(gw.metrics.render(), 200, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
