"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` with the right status.

Why one exception type for everything: handlers raise :class:`APIError` wherever they
notice a problem, and one handler turns it into the body every OpenAI client already
knows how to read (the ``openai`` SDK maps the status to ``BadRequestError``,
``RateLimitError``... and shows ``message``). Pydantic's request validation errors and
Starlette's 404/405 get the same shape, so no client ever sees a FastAPI-style ``detail``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

__all__ = ["APIError", "error_response", "install"]

log = logging.getLogger("modelladder.gateway")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "contract_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
}


class APIError(Exception):
    """An error answer. ``extra`` adds top-level keys next to ``error`` (e.g. the attempts)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        param: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code},
            **self.extra,
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_response(status: int, message: str, code: str | None = None, **kw: Any) -> JSONResponse:
    return APIError(status, message, code=code, **kw).response()


_RESPONSE_FORMAT_TAGS = ("text", "json_object", "json_schema")


def _loc(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p != "body"]
    # a discriminated union puts its tag in the path: response_format.json_schema.json_schema.name
    if len(parts) > 1 and parts[0] == "response_format" and parts[1] in _RESPONSE_FORMAT_TAGS:
        del parts[1]
    # drop pydantic's union/discriminator tags ("ResponseFormatText", "str", "list[...]")
    parts = [p for p in parts if not (p[:1].isupper() or p in ("str", "int", "float", "bool") or "[" in p)]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or None


def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": "invalid"}
    kind = str(first.get("type", "invalid"))
    param = _loc(tuple(first.get("loc", ())))
    if kind == "json_invalid":
        return error_response(400, "the request body is not valid JSON", "invalid_json")
    if kind == "extra_forbidden":
        return error_response(
            400, f"Unrecognized request argument supplied: {param}", "unrecognized_argument", param=param
        )
    msg = str(first.get("msg", "invalid value"))
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return error_response(400, f"{param or 'body'}: {msg}{more}", kind, param=param)


def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code)
    msg = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404:
        msg = f"no such endpoint: {request.method} {request.url.path}"
    return error_response(exc.status_code, msg, code, headers=dict(exc.headers or {}))


def _api(request: Request, exc: APIError) -> JSONResponse:
    return exc.response()


def _crash(request: Request, exc: Exception) -> JSONResponse:
    # Never log the request itself: its headers hold the API key.
    log.exception("internal error on %s %s", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}", "internal_error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _crash)
