"""A real OTLP/HTTP trace receiver on loopback, and a small OpenAI-compatible upstream.

Why a receiver of our own instead of a collector binary: the OpenTelemetry Collector is not
a Python package, and what the tests must prove is that the gateway's spans arrive over the
wire as a collector (Jaeger, Phoenix, Langfuse) would decode them. This server speaks the
OTLP/HTTP protocol: ``POST /v1/traces`` with a protobuf ``ExportTraceServiceRequest`` (gzip or
not), answered with an ``ExportTraceServiceResponse``, decoded with the protocol's own
generated classes (``opentelemetry-proto``).

The upstream answers ``/v1/chat/completions`` per requested model from a script the test
sets, with real usage figures, so cloud rungs (backend ``openai``) run over real HTTP.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ["OtlpReceiver", "ReceivedSpan", "Upstream", "otlp_receiver", "upstream"]


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


@dataclass
class ReceivedSpan:
    """One span as it arrived: ids in hex, times in ns since the epoch, kind and status as
    the protocol's numbers (SpanKind: 1 internal, 2 server, 3 client; status 2 is error)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""


class OtlpReceiver:
    """Collects every span posted to it; :meth:`wait_for` blocks until enough arrived."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.content_types: set[str] = set()
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                receiver._take(self.headers.get("content-type", ""), body)
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _take(self, content_type: str, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        got = []
        for rs in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(ReceivedSpan(
                        name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(), kind=s.kind,
                        start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano,
                        status_code=s.status.code, status_message=s.status.message,
                        attributes={kv.key: _value(kv.value) for kv in s.attributes},
                        resource=resource, scope=ss.scope.name,
                    ))  # fmt: skip
        with self._cond:
            self.requests += 1
            self.content_types.add(content_type)
            self.spans.extend(got)
            self._cond.notify_all()

    def wait_for(self, n: int, timeout_s: float = 20.0) -> list[ReceivedSpan]:
        """At least ``n`` spans (all received so far), or an AssertionError after ``timeout_s``."""
        return self.wait_until(lambda spans: len(spans) >= n, f"{n} spans", timeout_s)

    def wait_until(self, done: Callable[[list[ReceivedSpan]], bool], what: str,
                   timeout_s: float = 20.0) -> list[ReceivedSpan]:  # fmt: skip
        """All spans received so far once ``done(spans)``, or an AssertionError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not done(self.spans):
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.spans)} spans arrived in {timeout_s}s, not {what}"
                self._cond.wait(left)
            return list(self.spans)


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    rec = OtlpReceiver()
    thread = threading.Thread(target=rec.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()


#: An upstream's script: model name -> (request body) -> (content or None, tool calls or None).
Script = Callable[[str, dict[str, Any]], dict[str, Any]]


class Upstream:
    """An OpenAI-compatible chat endpoint answering from ``script(model, request)``, which
    returns the choice's ``message`` dict. Usage: ``prompt_tokens`` is the request's message
    count times 10, ``completion_tokens`` the answer's word count (plus 5 per tool call)."""

    def __init__(self, script: Script):
        self.script = script
        self.requests: list[dict[str, Any]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                req = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                upstream.requests.append(req)
                message = {"role": "assistant", **upstream.script(req["model"], req)}
                words = len((message.get("content") or "").split()) + 5 * len(message.get("tool_calls") or [])
                body = json.dumps({
                    "id": f"up-{len(upstream.requests)}", "object": "chat.completion", "created": 0,
                    "model": req["model"],
                    "choices": [{"index": 0, "message": message,
                                 "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}],
                    "usage": {"prompt_tokens": 10 * len(req["messages"]), "completion_tokens": words,
                              "total_tokens": 10 * len(req["messages"]) + words},
                }).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@contextmanager
def upstream(script: Script) -> Iterator[Upstream]:
    up = Upstream(script)
    thread = threading.Thread(target=up.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield up
    finally:
        up.server.shutdown()
        up.server.server_close()
