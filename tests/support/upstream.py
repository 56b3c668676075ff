"""A misbehaving OpenAI-compatible upstream: a real HTTP server on loopback, in a thread.

Why a real server and not a mocked client: the faults that hurt a gateway live below the
SDK -- a connection reset half-way through a body, a body that never ends, a header that
arrives after the timeout -- and only a socket produces them. Each request is answered by
the *behaviour* set for its ``model`` (:meth:`Upstream.set`: a sequence, the last one
repeating), and every request is logged (model, time, Authorization header) so a test can
check what reached the upstream and when.

Behaviours: ``"ok"`` (a valid answer for the request's contract), ``{"slow": s}`` (the answer
after ``s`` seconds), ``{"status": 429|500|503, "retry_after": "2"}``, ``"reset"`` (headers
and half a body, then a TCP RST), ``"truncated"`` (200, JSON cut short), ``"violate"`` (valid
JSON that breaks the request's schema), ``"unknown_tool"`` (a call to a tool the request
did not offer), ``"huge"`` (a 50 MB body with its Content-Length), ``"huge_chunked"`` (the
same, chunked: no length up front), ``"endless"`` (a chunked body that never ends),
``"trickle"`` (a byte every 50 ms, forever), ``{"echo_key": status}`` (an error whose body
quotes the Authorization header, as careless servers do).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["HUGE_BYTES", "Seen", "Upstream", "upstream"]

HUGE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Seen:
    model: str
    at: float  # time.monotonic() when the request arrived
    authorization: str


def _instance(schema: dict[str, Any]) -> Any:
    """A minimal value valid for a simple JSON schema (objects, strings, numbers, booleans)."""
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _instance(props[k]) for k in schema.get("required", list(props))}
    return {"string": "Bob", "integer": 30, "number": 1.5, "boolean": True}.get(str(kind), "Bob")


def _completion(model: str, message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {"id": "up-1", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}  # fmt: skip


def answer(model: str, request: dict[str, Any], kind: str = "ok") -> dict[str, Any]:
    """The upstream's answer to ``request``: valid for its contract (``ok``), valid JSON that
    breaks it (``violate``), or a call to a tool it did not offer (``unknown_tool``)."""
    tools = request.get("tools") or []
    rf = request.get("response_format") or {}
    if kind == "unknown_tool" or (tools and kind == "ok"):
        name = "drop_all_tables" if kind == "unknown_tool" else tools[0]["function"]["name"]
        params = {} if kind == "unknown_tool" else tools[0]["function"].get("parameters", {})
        call = {"id": "call_1", "type": "function",
                "function": {"name": name, "arguments": json.dumps(_instance(params) if params else {})}}  # fmt: skip
        return _completion(model, {"content": None, "tool_calls": [call]}, "tool_calls")
    if rf.get("type") == "json_schema":
        value = _instance(rf["json_schema"]["schema"])
        if kind == "violate":
            value = {"name": 42}  # wrong type, required field missing
        return _completion(model, {"content": json.dumps(value)})
    if kind == "violate":
        return _completion(model, {"content": ""})  # a free-text step's contract: non-empty
    return _completion(model, {"content": f"ok from {model}"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # /v1/models, for anything that probes
        self._send(200, {"object": "list", "data": []})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        model = str(request.get("model", ""))
        auth = self.headers.get("authorization", "")
        behaviour = self.server.owner.next_behaviour(model, auth)
        try:
            self._behave(behaviour, model, request, auth)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True  # the client gave up (as it should): nothing to do

    def finish(self) -> None:
        with suppress(OSError):
            super().finish()

    # -- the behaviours -------------------------------------------------------------------
    def _behave(self, b: Any, model: str, request: dict[str, Any], auth: str) -> None:
        if isinstance(b, dict) and "slow" in b:
            if self.server.owner.stopping.wait(b["slow"]):
                return
            b = "ok"
        if isinstance(b, dict) and "status" in b:
            headers = {"retry-after": str(b["retry_after"])} if b.get("retry_after") is not None else {}
            msg = {429: "Rate limit reached", 500: "Internal error", 503: "Overloaded"}.get(
                b["status"], "error"
            )
            self._send(
                b["status"], {"error": {"message": msg, "type": "server_error", "code": None}}, headers
            )
        elif isinstance(b, dict) and "echo_key" in b:
            body = {
                "error": {"message": f"key {auth.removeprefix('Bearer ')} is not allowed here", "code": None}
            }
            self._send(b["echo_key"], body)
        elif b in ("ok", "violate", "unknown_tool"):
            self._send(200, answer(model, request, b))
        elif b == "truncated":
            raw = json.dumps(answer(model, request)).encode()
            self._raw(200, raw[: len(raw) // 2])
        elif b == "reset":
            raw = json.dumps(answer(model, request)).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw[: len(raw) // 3])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # RST, not FIN: the body is cut mid-way
            self.close_connection = True
        elif b == "huge":
            self._raw(200, self.server.owner.huge())
        elif b in ("huge_chunked", "endless", "trickle"):
            self._chunked(b)
        else:
            raise ValueError(f"unknown upstream behaviour {b!r}")

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._raw(status, json.dumps(body).encode(), headers)

    def _raw(self, status: int, raw: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)
        self.wfile.flush()

    def _chunked(self, kind: str) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        owner = self.server.owner
        piece = b"x" if kind == "trickle" else b'{"pad": "' + b"x" * 65536 + b'"},'
        sent = 0
        while not owner.stopping.is_set():
            if kind == "huge_chunked" and sent >= HUGE_BYTES:
                break
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
            sent += len(piece)
            if kind == "trickle":
                time.sleep(0.05)
        self.wfile.write(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: Upstream

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up (a killed gateway, a timeout) is what these tests are about


class Upstream:
    """The server. ``base_url`` ends in ``/v1``, ready for a rung's ``url``."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._plans: dict[str, list[Any]] = {}
        self.seen: list[Seen] = []
        self._huge: bytes | None = None
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="upstream", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def set(self, model: str, *behaviours: Any) -> None:
        """What ``model`` does next: each behaviour once, in order, the last one for ever after."""
        with self._lock:
            self._plans[model] = list(behaviours) or ["ok"]

    def next_behaviour(self, model: str, authorization: str) -> Any:
        with self._lock:
            self.seen.append(Seen(model, time.monotonic(), authorization))
            plan = self._plans.setdefault(model, ["ok"])
            return plan.pop(0) if len(plan) > 1 else plan[0]

    def calls(self, model: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.model == model]

    def huge(self) -> bytes:
        if self._huge is None:
            pad = HUGE_BYTES - 200
            self._huge = json.dumps(_completion("huge", {"content": "x" * pad})).encode()
        return self._huge

    def start(self) -> Upstream:
        # built before any request: json.dumps of 50 MB took longer than the flaky rung's 0.5 s
        # timeout on a busy machine, so the first "huge" answer was a timeout, not a big body
        self.huge()
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def upstream() -> Iterator[Upstream]:
    up = Upstream().start()
    try:
        yield up
    finally:
        up.stop()
