"""Backends: where a rung's model actually runs. One protocol (:class:`Backend`), one
factory (:func:`open_backend`) keyed by the rung's ``backend`` field."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelladder.backends.base import Backend, BackendError, Generation, GenerationParams

if TYPE_CHECKING:
    from modelladder.fleet import Rung

__all__ = ["Backend", "BackendError", "Generation", "GenerationParams", "open_backend"]


def open_backend(rung: Rung) -> Backend:
    """Create the backend for a rung. Local models are loaded once per process and shared."""
    if rung.backend == "llamacpp":
        from modelladder.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend.from_rung(rung)
    if rung.backend == "openai":
        from modelladder.backends.openai_compat import OpenAIBackend

        return OpenAIBackend.from_rung(rung)
    if rung.backend == "reference":
        raise BackendError(
            "model_missing",
            f"rung {rung.name!r} is a benchmark `reference` rung: it only exists inside `modelladder bench`",
        )
    raise BackendError("model_missing", f"rung {rung.name!r}: unknown backend {rung.backend!r}")
