"""LoRA adapters on one resident base model.

A specialist rung is the base GGUF plus a small GGUF LoRA adapter. Instead of loading a
model per specialist, the adapter files are loaded once onto the shared base and the
active set is switched per request (tens of microseconds in llama.cpp). The KV cache is
dropped on a switch: cached activations were computed under the other adapter.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import llama_cpp

from modelladder.backends.base import BackendError
from modelladder.backends.loaded_model import LoadedModel

__all__ = ["load_adapter", "set_adapter"]


def load_adapter(model: LoadedModel, path: str) -> Any:
    """Load the adapter file onto ``model`` once (later calls return the loaded one)."""
    if path not in model.adapters:
        p = Path(path).expanduser()
        if not p.is_file():
            raise BackendError("model_missing", f"LoRA adapter not found: {p}")
        adapter = llama_cpp.llama_adapter_lora_init(model.llm.model, str(p).encode("utf-8"))
        if adapter is None:
            raise BackendError(
                "model_missing", f"llama.cpp could not load LoRA adapter {p} for base {model.path.name}"
            )
        model.adapters[path] = adapter
    return model.adapters[path]


def set_adapter(model: LoadedModel, path: str | None, scale: float = 1.0) -> None:
    """Make ``path`` the only active adapter (``None``: the bare base model)."""
    ctx = model.llm._ctx.ctx
    if path is None:
        rc = llama_cpp.llama_set_adapters_lora(ctx, None, 0, None)
    else:
        adapter = load_adapter(model, path)
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(scale)
        rc = llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales)
    if rc:
        raise BackendError("internal", f"llama.cpp refused to activate adapter {path!r} (code {rc})")
    model.active_adapter = path
    model.llm.n_tokens = 0  # the cached prefix was computed under another adapter
