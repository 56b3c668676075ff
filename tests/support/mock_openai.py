"""An instant OpenAI-compatible upstream on loopback, run as its own process.

Why: the replica tests put real ``modelladder serve`` processes under load without loading a
model; their rungs are cloud rungs (backend ``openai``) pointing here. It answers
``POST /v1/chat/completions`` at once: free text echoes the last user message, a request with
``tools`` calls the first tool with its first string parameter set to ``"Paris"``. A process
of its own so that its work does not compete for the test process's GIL with the clients.

Run: ``python -m tests.support.mock_openai PORT``; :func:`mock_upstream` starts and stops it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.support.models import free_port

__all__ = ["answer", "mock_upstream"]

_ids = itertools.count(1)


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """The completion this upstream returns for ``request``."""
    messages = request.get("messages") or [{}]
    last = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
    content = last.get("content")
    text = content if isinstance(content, str) else json.dumps(content)
    message: dict[str, Any] = {"role": "assistant", "content": f"echo {text}"}
    finish = "stop"
    tools = request.get("tools") or []
    if tools:
        fn = tools[0]["function"]
        arg = next(iter(fn.get("parameters", {}).get("properties", {})), None)
        call = {"id": f"call_{next(_ids)}", "type": "function",
                "function": {"name": fn["name"], "arguments": json.dumps({arg: "Paris"} if arg else {})}}  # fmt: skip
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
    return {
        "id": f"mock-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "mock"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the backend's client reuses its connections
    # headers and body are written apart: without this, Nagle + delayed ACK add ~40 ms per call
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path.rstrip("/").endswith("/chat/completions"):
            payload, status = answer(json.loads(body or b"{}")), 200
        else:
            payload, status = {"error": {"message": f"no route {self.path}"}}, 404
        self._send(status, payload)

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": "mock", "object": "model"}]})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # 64+ clients connecting at once (the default backlog is 5)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client killed mid-request (the SIGKILL test) resets its connection."""


@contextlib.contextmanager
def mock_upstream() -> Iterator[str]:
    """Start the upstream in a child process; yield its base URL (``http://127.0.0.1:P/v1``)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.mock_openai", str(port)])
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the mock upstream exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the mock upstream did not start in 30 s")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    _Server(("127.0.0.1", int(sys.argv[1])), _Handler).serve_forever()
