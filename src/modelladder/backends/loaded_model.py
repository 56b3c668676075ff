"""A GGUF model resident in this process, with everything derived from it that is costly to
build: its llguidance tokenizer, chat-template formatter and per-token tables.

It is its own module because two others need it: :mod:`.llamacpp` (decoding) and
:mod:`.adapters` (LoRA adapters switched on the same resident model). One loaded model is
cached per process per GGUF file (and context size, thread count) and shared by every rung
and adapter that uses it; its lock serialises generations on it.
"""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp
import llguidance
import llguidance.llamacpp
import numpy as np

from modelladder.backends.base import BackendError
from modelladder.backends.llamacpp_probe import ProbeCrash, ensure_runs
from modelladder.backends.prompt_cache import PrefixLRU

__all__ = ["LoadedModel", "load_model", "loaded_models"]


@dataclass
class LoadedModel:
    """A model resident in this process, with everything derived from it that is costly."""

    path: Path
    llm: llama_cpp.Llama
    tokenizer: llguidance.LLTokenizer
    eos: set[int]
    n_vocab: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    chat_template: str | None = None
    formatter: Any = None
    grammar_cache: dict[str, str] = field(default_factory=dict)
    adapters: dict[str, Any] = field(default_factory=dict)
    active_adapter: str | None = None
    # per token: does its text contain a letter or digit? (computed by load_model)
    wordy: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # saved prompt states of other conversations (budget: the largest any rung on it asks)
    prompt_cache: PrefixLRU = field(default_factory=lambda: PrefixLRU(budget_bytes=0))


_LOADED: dict[tuple[str, int, int], LoadedModel] = {}
_LOAD_LOCK = threading.Lock()


def loaded_models() -> list[LoadedModel]:
    """The models resident in this process (for ``/metrics``: their prompt caches)."""
    with _LOAD_LOCK:
        return list(_LOADED.values())


def load_model(path: Path, n_ctx: int = 8192, n_threads: int | None = None) -> LoadedModel:
    """Load (once per process) a GGUF model and build its llguidance tokenizer."""
    threads = n_threads or 2
    key = (str(path), n_ctx, threads)
    with _LOAD_LOCK:
        if key in _LOADED:
            return _LOADED[key]
        if not path.is_file():
            raise BackendError("model_missing", f"GGUF file not found: {path}")
        try:  # a llama.cpp that dies on this CPU must say so, not kill the process silently
            ensure_runs([path])
        except ProbeCrash as exc:
            raise BackendError("llama_crash", str(exc)) from exc
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                llm = llama_cpp.Llama(
                    str(path),
                    n_ctx=n_ctx,
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_batch=512,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise BackendError("model_missing", f"cannot load GGUF model {path}: {exc}") from exc
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        eos = {llm.token_eos()}
        eot = llama_cpp.llama_vocab_eot(vocab)
        if eot >= 0:
            eos.add(eot)
        with warnings.catch_warnings():  # llguidance calls a deprecated accessor once per token
            warnings.simplefilter("ignore", DeprecationWarning)
            tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(vocab)
        template = llm.metadata.get("tokenizer.chat_template")
        formatter = None
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            def piece(tok: int) -> str:
                return llm.detokenize([tok], special=True).decode("utf-8", "replace") if tok >= 0 else ""

            formatter = Jinja2ChatFormatter(
                template, eos_token=piece(llm.token_eos()), bos_token=piece(llm.token_bos())
            )
        n_vocab = llm.n_vocab()
        wordy = np.array(
            [
                any(ch.isalnum() for ch in llm.detokenize([t]).decode("utf-8", "ignore"))
                for t in range(n_vocab)
            ]
        )
        loaded = LoadedModel(
            path=path,
            llm=llm,
            tokenizer=tokenizer,
            eos=eos,
            n_vocab=n_vocab,
            chat_template=template,
            formatter=formatter,
            wordy=wordy,
        )
        _LOADED[key] = loaded
        return loaded
