"""Backends: where a rung's model actually runs. One protocol (:class:`Backend`), one
registry (:mod:`.registry`, the ``modelladder.backends`` entry-point group) that
:func:`open_backend` opens a rung's backend from, and :class:`ScriptedBackend`, a backend
answered by a function, for tests and offline use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelladder.backends.base import Backend, BackendError, Generation, GenerationParams
from modelladder.backends.registry import backend_names, open_backend
from modelladder.backends.scripted import Call, ScriptedBackend

if TYPE_CHECKING:
    from modelladder.fleet_types import Rung

__all__ = [
    "Backend", "BackendError", "Call", "Generation", "GenerationParams", "ScriptedBackend", "backend_names",
    "open_backend", "preload_backend",
]  # fmt: skip


def preload_backend(rung: Rung) -> Backend:
    """Open the rung's backend and load now whatever it loads lazily (a ``llamacpp`` rung's LoRA
    adapter), so a wrong file is one clear error before a run, not a failed attempt per item."""
    backend = open_backend(rung)
    preload = getattr(backend, "preload", None)
    if callable(preload):
        preload()
    return backend
