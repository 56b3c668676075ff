"""Who may call the gateway, and how much they may send.

Why a plain ASGI middleware: it runs before routing and body parsing for every request,
costs a dictionary lookup and a hash, and (unlike Starlette's ``BaseHTTPMiddleware``)
does not wrap the receive channel in a way that hides client disconnects from the queue.

Rules: with API keys configured, every ``/v1/*`` request needs ``Authorization: Bearer
<key>`` (401 otherwise). With none configured, only loopback clients are served (403 for
others), whatever address the server was bound to, so an app started by another ASGI
server on ``0.0.0.0`` is not an open model endpoint. Keys are compared as SHA-256 digests
in constant time and are never logged or stored; bodies over the limit get 413.

The dashboard (``/ui``, :mod:`modelladder.gateway.ui`): a browser cannot send a header when it
follows a link, so under ``/ui`` the key may also come from the ``modelladder_key`` cookie that
the dashboard's login form sets (HttpOnly, SameSite=Strict, Path=/ui: never sent to ``/v1``,
never readable by the page's script, never sent by another site). The login form and the static
files (no data in them) are public; a dashboard page without a key is redirected to the form,
its JSON API answers 401 like ``/v1``.

Tenants: each key is a tenant, named by :func:`tenant_id` (a digest prefix of the key, never
the key), which the Guard puts in ``scope["state"]["tenant"]``; the gateway tags every run
with it and shows a caller only its own runs (``/v1/traces``, ``/v1/feedback``). Without keys
there is one tenant, ``None``: every loopback client sees every run.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from fastapi import HTTPException

__all__ = [
    "Guard", "KEYS_ENV", "KEY_FILE_ENV", "Message", "PUBLIC_PATHS", "Receive", "Scope", "Send",
    "UI_COOKIE", "is_loopback", "key_checker", "load_api_keys", "tenant_id",
]  # fmt: skip

log = logging.getLogger("modelladder.gateway")

KEYS_ENV = "MODELLADDER_API_KEYS"
KEY_FILE_ENV = "MODELLADDER_API_KEY_FILE"
PUBLIC_PATHS = frozenset(
    {"/healthz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)

UI_PREFIX = "/ui"
UI_COOKIE = "modelladder_key"
UI_LOGIN = "/ui/login"
_UI_PUBLIC_PREFIX = "/ui/static/"

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def load_api_keys(
    key_file: str | Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """Keys from ``$MODELLADDER_API_KEYS`` (comma-separated) and a key file (one per line,
    ``#`` comments), the file given or ``$MODELLADDER_API_KEY_FILE``. Raises ValueError
    (never quoting a key) when the file cannot be read."""
    env = os.environ if env is None else env
    keys = [k.strip() for k in env.get(KEYS_ENV, "").split(",") if k.strip()]
    path = key_file or env.get(KEY_FILE_ENV)
    if path:
        p = Path(path).expanduser()
        try:
            text = p.read_text()
            mode = p.stat().st_mode
        except OSError as exc:
            raise ValueError(f"cannot read the API key file {p}: {exc.strerror or exc}") from None
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("the API key file %s is readable by other users; chmod 600 it", p)
        keys += [
            line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
        ]
    return tuple(dict.fromkeys(keys))


def is_loopback(host: str | None) -> bool:
    """``None`` is a Unix socket client: local by construction."""
    if host is None:
        return True
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key if isinstance(key, bytes) else key.encode()).digest()


def tenant_id(key: str | bytes) -> str:
    """The name runs of this key are tagged with: 12 hex digits of a SHA-256 of a SHA-256 of
    the key. Stable across restarts and key-file reorderings; the key cannot be read back
    from it (and what the Guard compares, the single digest, is never stored either)."""
    return "key-" + hashlib.sha256(_digest(key)).hexdigest()[:12]


def _tenant(digest: bytes) -> str:
    return "key-" + hashlib.sha256(digest).hexdigest()[:12]


def key_checker(keys: Iterable[str]) -> Callable[[str], bool]:
    """Whether a presented key is one of ``keys`` (digests compared in constant time): the
    dashboard's login form checks a key with the Guard's own rule before setting its cookie."""
    digests = [_digest(k) for k in keys]

    def check(presented: str) -> bool:
        d = _digest(presented.strip())
        ok = False
        for known in digests:
            ok |= hmac.compare_digest(known, d)
        return ok and bool(presented.strip())

    return check


def _is_ui(path: str) -> bool:
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def _ui_public(path: str) -> bool:
    return path == UI_LOGIN or path.startswith(_UI_PUBLIC_PREFIX)


def _cookie(scope: Scope, name: str) -> bytes:
    """One cookie's value from the request headers (percent-decoded), ``b""`` if absent."""
    from urllib.parse import unquote_to_bytes

    for header, value in scope.get("headers", ()):
        if header == b"cookie":
            for part in value.split(b";"):
                k, _, v = part.strip().partition(b"=")
                if k == name.encode():
                    return unquote_to_bytes(v.strip(b'"'))
    return b""


def _error(status: int, message: str, code: str, kind: str) -> tuple[int, bytes]:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return status, json.dumps(body).encode()


class _TooLarge(HTTPException):
    """Raised from ``receive``; a FastAPI ``HTTPException`` so that body parsing passes it
    on (it turns other exceptions into a 400) and the error handler answers 413."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit} bytes")


class Guard:
    """ASGI middleware: authentication, loopback-only without keys, request size limit."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        *,
        keys: Iterable[str],
        max_body_bytes: int,
        observe: Callable[[str, int], None] | None = None,
    ):
        self.app = app
        self._digests = [_digest(k) for k in keys]
        self.max_body_bytes = max_body_bytes
        self.observe = observe  # (path, status) of every answered request, for metrics

    @property
    def has_keys(self) -> bool:
        return bool(self._digests)

    def _check(self, scope: Scope) -> tuple[int, bytes] | None:
        """``None`` (and the caller's tenant in the scope's state) or the refusal."""
        path = scope["path"]
        if path in PUBLIC_PATHS or _ui_public(path):
            return None
        if not self._digests:
            client = scope.get("client")
            if is_loopback(client[0] if client else None):
                return None
            return _error(403, "no API key is configured on this gateway, so it serves loopback clients only; "
                          f"set {KEYS_ENV} or {KEY_FILE_ENV} on the server", "loopback_only", "permission_error")  # fmt: skip
        auth = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                auth = value
                break
        scheme, _, token = auth.partition(b" ")
        if not auth and _is_ui(path):  # the dashboard's login cookie (see the module docstring)
            scheme, token = b"bearer", _cookie(scope, UI_COOKIE)
        if scheme.lower() != b"bearer" or not token.strip():
            return _error(401, "missing API key: send 'Authorization: Bearer <key>'", "missing_api_key",
                          "authentication_error")  # fmt: skip
        presented = _digest(token.strip())
        ok = False
        for d in self._digests:
            ok |= hmac.compare_digest(d, presented)
        if not ok:
            return _error(401, "incorrect API key provided", "invalid_api_key", "authentication_error")
        scope.setdefault("state", {})["tenant"] = _tenant(presented)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self._check(scope)
        if refused is None:
            for name, value in scope.get("headers", ()):
                if name == b"content-length":
                    try:
                        too_big = int(value) > self.max_body_bytes
                    except ValueError:
                        too_big = False
                    if too_big:
                        refused = self._too_large()
                    break
        if refused is not None:
            path = scope["path"]
            if refused[0] == 401 and _is_ui(path) and not path.startswith(UI_PREFIX + "/api/"):
                refused = (303, b"")  # a dashboard page: to the login form instead of a JSON 401
            if self.observe is not None:
                self.observe(path, refused[0])
            if refused[0] == 303:
                await _send_redirect(send, UI_LOGIN)
            else:
                await _send_error(send, *refused)
            return
        await self._limited(scope, receive, send)

    def _too_large(self) -> tuple[int, bytes]:
        return _error(413, f"request body larger than {self.max_body_bytes} bytes", "request_too_large",
                      "invalid_request_error")  # fmt: skip

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count body bytes as they arrive (chunked uploads have no Content-Length)."""
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body_bytes:
                    raise _TooLarge(self.max_body_bytes)
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                if self.observe is not None:
                    self.observe(scope["path"], msg["status"])
            await send(msg)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                if self.observe is not None:
                    self.observe(scope["path"], 413)
                await _send_error(send, *self._too_large())


async def _send_error(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


async def _send_redirect(send: Send, location: str) -> None:
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode()), (b"content-length", b"0")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b""})
