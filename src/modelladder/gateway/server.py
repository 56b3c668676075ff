"""Running the gateway: the bind rule of ``modelladder serve`` and an in-process server.

Why the bind rule lives here and not only in the CLI: any launcher (the CLI, a test, a
notebook) should get the same refusal to expose an unauthenticated gateway beyond loopback.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from modelladder.gateway.auth import KEY_FILE_ENV, KEYS_ENV, is_loopback

__all__ = ["BackgroundServer", "BindError", "check_bind"]


class BindError(ValueError):
    """The requested address would expose a gateway that has no API key."""


def check_bind(host: str, has_keys: bool) -> str:
    """The message to print at start; raises :class:`BindError` for a non-loopback host without keys."""
    if has_keys:
        return f"API keys configured: clients must send 'Authorization: Bearer <key>' (listening on {host})"
    if not is_loopback(host):
        raise BindError(
            f"refusing to listen on {host}: no API key is configured, so the gateway binds to loopback only; "
            f"set {KEYS_ENV} or {KEY_FILE_ENV} (or --api-key-file), or use --host 127.0.0.1"
        )
    return f"no API key configured: listening on loopback ({host}) only; set {KEYS_ENV} to serve other hosts"


class BackgroundServer:
    """uvicorn serving ``app`` from a daemon thread on a free loopback port.

    For tests, benchmarks and notebooks: a real socket and a real HTTP stack, in-process::

        with BackgroundServer(create_app(...)) as srv:
            OpenAI(base_url=srv.base_url + "/v1", api_key="x")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on")
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="modelladder-gateway", daemon=True)
        self.port = port

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start (see the log above)")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
