"""The dashboard's HTTP surface: pages, static files, the login form and the JSON API.

Why it is routes on any FastAPI app: the gateway mounts them next to ``/v1`` (over its live
store, with its fleet's frontier rung and its keys) and ``modelladder ui`` mounts them on a
small app of their own over a store file (:func:`dashboard_app`). Everything is a GET except
the login form's POST; nothing here writes to the store.

Pages are one static shell (``static/index.html``) whose script reads the path and fetches
``/ui/api/...``; a page for an unknown step or run is checked first and answered with a plain
404 page, so a mistyped link never shows an empty dashboard. The API answers OpenAI-shaped
errors (:class:`~modelladder.gateway.errors.APIError`), as ``/v1`` does.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote

import anyio.to_thread
from fastapi import FastAPI, Request
from starlette.responses import RedirectResponse, Response

from modelladder.gateway import errors
from modelladder.gateway.auth import UI_COOKIE, Guard
from modelladder.gateway.errors import APIError
from modelladder.gateway.ui import stats
from modelladder.traces import TraceStore

__all__ = ["Dashboard", "dashboard_app", "install"]

STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css", "index.html": "text/html"}
# the page's own script and style only: model output shown on the page can never run as code
_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@dataclass
class Dashboard:
    """What the dashboard reads: a store, the frontier rung (``None``: picked from the store)
    and, with API keys, the check the login form uses (``None``: no keys, no login)."""

    store: TraceStore
    frontier: stats.Frontier | None = None
    check_key: Callable[[str], bool] | None = None
    limit: int = stats.DEFAULT_LIMIT


def _static(name: str) -> bytes:
    return resources.files("modelladder.gateway.ui").joinpath("static", name).read_bytes()


def _json(body: Any) -> Response:
    return Response(json.dumps(body, ensure_ascii=False).encode(), 200, _HEADERS, "application/json")


def _page(status: int, title: str, body_html: str) -> Response:
    doc = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>'
        f'{html.escape(title)}</title><link rel="stylesheet" href="/ui/static/dashboard.css"></head>'
        f'<body><main class="plain"><h1>{html.escape(title)}</h1>{body_html}</main></body></html>'
    )
    return Response(doc.encode(), status, _HEADERS, "text/html; charset=utf-8")


def _not_found(what: str) -> Response:
    return _page(404, "Not found", f'<p>{html.escape(what)}</p><p><a href="/ui">All steps</a></p>')


def _shell() -> Response:
    return Response(_static("index.html"), 200, _HEADERS, "text/html; charset=utf-8")


def _tenant(request: Request) -> str | None:
    return getattr(request.state, "tenant", None)


_LOGIN_FORM = (
    '<form method="post" action="/ui/login" class="login">'
    '<label>API key <input type="password" name="key" autocomplete="current-password" autofocus></label>'
    ' <button type="submit">Sign in</button></form>'
    '<p class="note">The key is kept in an HttpOnly cookie for <code>/ui</code> only; the dashboard '
    "shows the runs made with this key.</p>"
)


def install(app: FastAPI, dash: Dashboard) -> None:
    """Add the dashboard's routes to ``app`` (whose Guard authenticates ``/ui``)."""

    async def window(request: Request) -> stats.Window:
        return await anyio.to_thread.run_sync(stats.read_window, dash.store, _tenant(request), dash.limit)

    async def owned(request: Request, run_id: str) -> Any:
        return await anyio.to_thread.run_sync(stats.owned_run, dash.store, _tenant(request), run_id)

    # -- pages --------------------------------------------------------------------------------
    @app.get("/ui", include_in_schema=False)
    async def ui_home() -> Response:
        return _shell()

    @app.get("/ui/steps/{key:path}", include_in_schema=False)
    async def ui_step(key: str, request: Request) -> Response:
        win = await window(request)
        if not any((r.step_key or r.step) == key for r in win.runs):
            return _not_found(f"No step {key!r} among the runs you can see.")
        return _shell()

    @app.get("/ui/runs/{run_id}", include_in_schema=False)
    async def ui_run(run_id: str, request: Request) -> Response:
        if await owned(request, run_id) is None:
            return _not_found(f"No run with id {run_id!r} among the runs you can see.")
        return _shell()

    @app.get("/ui/static/{name}", include_in_schema=False)
    async def ui_static(name: str) -> Response:
        if name not in STATIC:
            return _not_found(f"No file {name!r}.")
        return Response(_static(name), 200, {**_HEADERS, "cache-control": "no-cache"}, STATIC[name])

    @app.get("/ui/login", include_in_schema=False)
    async def ui_login_form() -> Response:
        if dash.check_key is None:
            return RedirectResponse("/ui", 303)
        return _page(200, "modelladder dashboard: sign in", _LOGIN_FORM)

    @app.post("/ui/login", include_in_schema=False)
    async def ui_login(request: Request) -> Response:
        if dash.check_key is None:
            return RedirectResponse("/ui", 303)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0].strip()
        if not dash.check_key(key):
            return _page(
                401, "modelladder dashboard: sign in", '<p class="bad">Unknown API key.</p>' + _LOGIN_FORM
            )
        done = RedirectResponse("/ui", 303)
        done.set_cookie(UI_COOKIE, quote(key, safe=""), path="/ui", httponly=True, samesite="strict")
        return done

    @app.get("/ui/logout", include_in_schema=False)
    async def ui_logout() -> Response:
        done = RedirectResponse("/ui/login" if dash.check_key else "/ui", 303)
        done.delete_cookie(UI_COOKIE, path="/ui", httponly=True, samesite="strict")
        return done

    # -- the JSON API ---------------------------------------------------------------------------
    @app.get("/ui/api/steps", include_in_schema=False)
    async def api_steps(request: Request) -> Response:
        """Every step the caller has runs of, with its headline figures."""
        return _json(stats.steps_overview(await window(request), dash.frontier))

    @app.get("/ui/api/steps/{key:path}", include_in_schema=False)
    async def api_step(key: str, request: Request) -> Response:
        body = stats.step_detail(await window(request), key, dash.frontier)
        if body is None:
            raise APIError(404, f"no step {key!r} among your runs", code="step_not_found", param="key")
        return _json(body)

    @app.get("/ui/api/runs/{run_id}", include_in_schema=False)
    async def api_run(run_id: str, request: Request) -> Response:
        run = await owned(request, run_id)
        if run is None:
            raise APIError(
                404, f"no run with id {run_id!r} is recorded", code="run_not_found", param="run_id"
            )
        labels = await anyio.to_thread.run_sync(lambda: dash.store.labels(run_id))
        return _json(stats.run_view(run, labels))


def dashboard_app(store: TraceStore, frontier: stats.Frontier | None = None) -> FastAPI:
    """The dashboard alone over ``store`` (``modelladder ui``): no keys, so loopback clients only
    (the Guard's rule), and every run is shown."""
    app = FastAPI(title="modelladder dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    errors.install(app)
    app.add_middleware(Guard, keys=(), max_body_bytes=64 * 1024)

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/ui", 303)

    install(app, Dashboard(store, frontier))
    return app
