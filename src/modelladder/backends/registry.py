"""The one backend registry: which ``backend = "..."`` names a fleet file may use, and what
opens each.

A backend is an entry point in the ``modelladder.backends`` group whose object is a
factory ``(Rung) -> Backend``. This package declares its own three in ``pyproject.toml``
(``llamacpp``, ``openai``, and the benchmark's ``reference`` oracle, declared by the
benchmark the way any third-party package would); another installed package adds one the
same way, as ``llm`` plugins add models::

    [project.entry-points."modelladder.backends"]
    mybackend = "my_package.backend:MyBackend.from_rung"

Fleet validation (:func:`modelladder.fleet.parse_fleet`) and :func:`open_backend` both ask
this module, so a name that parses is a name that opens. Entry points are read once per
process (installing a package does not change a running one).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from modelladder.backends.base import Backend, BackendError

if TYPE_CHECKING:
    from modelladder.fleet_types import Rung

__all__ = ["GROUP", "BackendFactory", "backend_factory", "backend_names", "open_backend"]

GROUP = "modelladder.backends"
BackendFactory = Callable[["Rung"], Backend]


@cache
def _registered() -> dict[str, EntryPoint]:
    """Entry points by name; the first installed distribution to claim a name keeps it."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return found


def backend_names() -> tuple[str, ...]:
    """The backend names a rung may use, sorted."""
    return tuple(sorted(_registered()))


def backend_factory(name: str) -> BackendFactory:
    """The factory registered under ``name``; importing it is deferred to this call, so
    reading a fleet file never imports llama.cpp or an HTTP client."""
    ep = _registered().get(name)
    if ep is None:
        known = ", ".join(backend_names()) or "none (is modelladder installed? `pip install -e .`)"
        raise BackendError("model_missing", f"unknown backend {name!r}; registered backends: {known}")
    factory: BackendFactory = ep.load()
    return factory


def open_backend(rung: Rung) -> Backend:
    """Create the backend for a rung. Local models are loaded once per process and shared."""
    try:
        factory = backend_factory(rung.backend)
    except BackendError as exc:
        raise BackendError(exc.code, f"rung {rung.name!r}: {exc}") from exc
    return factory(rung)
