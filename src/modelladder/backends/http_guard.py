"""Limits on what a remote endpoint may send back: a byte cap and a wall-clock deadline.

Why a transport and not a client option: httpx's timeouts are per network operation
(connect, each read), so an endpoint that trickles a byte every second, or streams an
endless body, never trips them and the caller hangs; and a non-streaming request reads the
whole body into memory before the OpenAI SDK sees it, so a 50 MB answer is 50 MB of RAM
per concurrent request. :class:`GuardedTransport` wraps the real transport and checks both
limits as the body arrives, so the ladder gets a :class:`~modelladder.backends.base.BackendError`
in bounded time and memory whatever the endpoint does.

Also here: :func:`retry_after_s`, reading an endpoint's ``Retry-After`` (seconds or an HTTP
date) and OpenAI's ``retry-after-ms``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "GuardedTransport",
    "ResponseTooLarge",
    "guarded_client",
    "retry_after_s",
]

DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024  # a chat completion is kilobytes; 8 MiB is generous


class ResponseTooLarge(httpx.ReadError):
    """The endpoint sent more than the transport's byte cap (raised while reading the body)."""


class _Guarded(httpx.SyncByteStream):
    def __init__(
        self, inner: httpx.SyncByteStream, request: httpx.Request, max_bytes: int, deadline: float | None
    ):
        self._inner, self._request, self._max, self._deadline = inner, request, max_bytes, deadline

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._inner:
            seen += len(chunk)
            if seen > self._max:
                raise ResponseTooLarge(
                    f"the response body exceeds {self._max} bytes; stopped reading", request=self._request
                )
            if self._deadline is not None and time.monotonic() > self._deadline:
                raise httpx.ReadTimeout(
                    "the response did not complete within the timeout", request=self._request
                )
            yield chunk

    def close(self) -> None:
        self._inner.close()


class GuardedTransport(httpx.BaseTransport):
    """``inner`` with a cap on response bytes and the request's read timeout as a deadline for
    the whole response (headers and body), not only for each read."""

    def __init__(self, inner: httpx.BaseTransport | None = None, max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES):
        self._inner = inner or httpx.HTTPTransport()
        self.max_bytes = max_bytes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {}).get("read")
        deadline = time.monotonic() + timeout if timeout else None
        response = self._inner.handle_request(request)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response.close()
            raise ResponseTooLarge(
                f"the response declares {declared} bytes, more than the {self.max_bytes} accepted",
                request=request,
            )
        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream)  # a sync transport returns a sync stream
        response.stream = _Guarded(stream, request, self.max_bytes, deadline)
        return response

    def close(self) -> None:
        self._inner.close()


class _Client(httpx.Client):
    """Closes its connections when collected, as the OpenAI SDK's own client does: a backend
    lives as long as its ladder and has no close of its own."""

    def __del__(self) -> None:
        if not self.is_closed:
            with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to tell
                self.close()


def guarded_client(timeout_s: float, max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> httpx.Client:
    """An httpx client whose responses are capped and deadlined (:class:`GuardedTransport`)."""
    return _Client(transport=GuardedTransport(max_bytes=max_bytes), timeout=timeout_s)


def retry_after_s(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the endpoint asked to wait, from ``retry-after-ms`` or ``Retry-After`` (delta
    seconds or an HTTP date); ``None`` when it said nothing usable."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
