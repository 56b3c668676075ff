"""The edge base model in transformers, loaded from the very GGUF the ladder runs.

Why from the GGUF: the adapter must fit the weights llama.cpp will apply it to, and the
bundled models ship only as GGUF (no hub access). transformers reads GGUF directly and
dequantises it to float32 (~35 s for SmolLM2 on 2 cores), so the dequantised copy is saved
once per GGUF (keyed by its SHA-256) and later loads take a fraction of a second. Saving
needs two fixes to the loaded model: ``config.architectures`` set, and the GGUF
``quantization_config`` / quantizer removed (transformers refuses to save a "GGUF-quantized"
model otherwise, although the weights in memory are plain float32).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
from functools import cache
from pathlib import Path
from typing import Any

from modelladder.distill.errors import DistillError

__all__ = ["cache_root", "dequantised_dir", "file_sha256", "load_base", "require_training_deps"]


def require_training_deps() -> None:
    """One clear message when the optional ``distill`` extra is missing."""
    missing = []
    for mod in ("torch", "transformers", "peft", "gguf"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise DistillError(
            f"training needs the `distill` extra (missing: {', '.join(missing)}): pip install 'modelladder[distill]'"
        )


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) -- a rewritten file is hashed again."""
    st = Path(path).stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


@cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_root() -> Path:
    from modelladder.traces.paths import data_dir

    return Path(os.environ.get("MODELLADDER_DISTILL_CACHE") or data_dir() / "distill-cache")


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _cache_entry(gguf: Path, cache_dir: Path | None) -> Path:
    return (cache_dir or cache_root()) / f"hf-{file_sha256(gguf)[:16]}"


def _complete(entry: Path) -> bool:
    return (entry / "config.json").is_file() and (entry / "model.safetensors").is_file()


def dequantised_dir(gguf: Path, *, cache_dir: Path | None = None) -> Path:
    """The cached directory holding the float32 transformers copy of ``gguf`` (``config.json``,
    ``model.safetensors``), written first if it is not there yet."""
    gguf = Path(gguf)
    if not gguf.is_file():
        raise DistillError(f"base model not found: {gguf}")
    entry = _cache_entry(gguf, cache_dir)
    if not _complete(entry):
        load_base(gguf, cache_dir=cache_dir)
    if not _complete(entry):
        raise DistillError(f"could not write the dequantised base model to {entry} (is it writable?)")
    return entry


def load_base(gguf: Path, *, cache_dir: Path | None = None) -> Any:
    """A float32 ``AutoModelForCausalLM`` of ``gguf`` (from the dequantised cache when present)."""
    require_training_deps()
    import torch
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    gguf = Path(gguf)
    if not gguf.is_file():
        raise DistillError(f"base model not found: {gguf}")
    target = _cache_entry(gguf, cache_dir)
    if _complete(target):
        try:
            return AutoModelForCausalLM.from_pretrained(str(target), dtype=torch.float32)
        except (OSError, ValueError) as exc:
            shutil.rmtree(target, ignore_errors=True)  # a torn cache entry: rebuild it below
            if (target / "config.json").exists():
                raise DistillError(
                    f"the cached base model {target} is unreadable ({exc}); delete it"
                ) from exc
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the GGUF loader draws its own progress bars
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
    except Exception as exc:  # transformers raises many types for an unsupported GGUF
        raise DistillError(f"transformers cannot load {gguf}: {type(exc).__name__}: {exc}") from exc
    model.config.architectures = [type(model).__name__]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # transformers types unknown attributes of a model as its submodules; these two are flags
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # no cache this time; the model in memory is fine
    return model
