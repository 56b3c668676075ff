"""Saved prompt states of several conversations per loaded model, found by longest prefix.

Why: a local model has one working KV sequence, so it reuses a prompt prefix only when the
previous request was the same conversation. Behind the gateway agents interleave, and two
conversations alternating would evict each other on every hop, re-evaluating thousands of
tokens each time. This cache keeps the KV states of recent conversations in host RAM and
hands back the one sharing the longest prefix with a new prompt, so a hop costs the tokens
it adds, not the ones it repeats (what llama.cpp's ``llama-server`` does with its slots and
prompt cache).

Design, and why not llama-cpp-python's ``LlamaRAMCache``:
- A state is saved only when the working sequence is about to be overwritten by another
  prompt (a switch), never after every completion: ``LlamaRAMCache`` copies the whole
  context state (logits included) after each call, which its users measured slower than no
  cache at all (llama-cpp-python issue #1293).
- Per-sequence state (``llama_state_seq_get_data``) holds that sequence's KV cells only
  (about 23 KB per token for SmolLM2-135M in f16), not the logits or the whole context.
- Entries are kept least-recently-used under a byte budget; a state larger than the budget
  is not kept, and an entry whose tokens are a prefix of a newer one is dropped (the newer
  one serves every prompt it served).
- Keys include the LoRA adapter: an adapter changes every layer's keys and values, so a
  state computed under one is never restored under another.

This module holds the pure bookkeeping (:class:`PrefixLRU`, unit-testable without a
model) and the llama.cpp calls that save and restore a sequence (:func:`save_sequence`,
:func:`restore_sequence`); :mod:`.llamacpp` decides when to use them.
"""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import llama_cpp
import numpy as np

__all__ = [
    "CacheStats",
    "DEFAULT_BUDGET_MB",
    "MIN_GAIN_TOKENS",
    "PrefixLRU",
    "SavedState",
    "common_prefix",
    "restore_sequence",
    "save_sequence",
]

#: Default budget per loaded model: room for about 40 conversations of 2k tokens with
#: SmolLM2-135M (23 KB per token), a small share of the 24 GiB of the machines this runs on.
DEFAULT_BUDGET_MB = 2048
#: A saved state is restored (and the working one saved) only when it covers at least this
#: many more tokens than what is resident: below that, evaluating them costs less than the copy.
MIN_GAIN_TOKENS = 32


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    same = a[:n] == b[:n]
    return int(n if same.all() else np.argmin(same))


@dataclass
class SavedState:
    """The KV state of one sequence for ``tokens``, computed under ``adapter``."""

    tokens: np.ndarray
    adapter: str | None
    data: Any  # a ctypes byte buffer (what llama.cpp wrote), or any payload in tests
    nbytes: int


@dataclass
class CacheStats:
    """Counters since the model was loaded (``/metrics`` and each generation's record)."""

    hits: int = 0  # prompts that restored a saved state
    misses: int = 0  # prompts that found nothing better than what was resident
    restored_tokens: int = 0  # prompt tokens restored instead of evaluated
    saves: int = 0
    evictions: int = 0  # entries dropped to stay under the budget
    oversize: int = 0  # states not kept because they alone exceed the budget
    restore_failures: int = 0  # restores llama.cpp refused (the prompt was evaluated instead)
    entries: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class PrefixLRU:
    """Saved states under ``budget_bytes``, least recently used first out."""

    budget_bytes: int
    min_gain: int = MIN_GAIN_TOKENS
    stats: CacheStats = field(default_factory=CacheStats)
    resident_prompt: int = 0  # length of the last prompt fed to the working sequence
    _entries: OrderedDict[int, SavedState] = field(default_factory=OrderedDict)
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def enabled(self) -> bool:
        return self.budget_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, tokens: np.ndarray, adapter: str | None) -> tuple[SavedState | None, int]:
        """The saved state (under ``adapter``) sharing the longest prefix with ``tokens``,
        and the length of that prefix; it becomes the most recently used."""
        with self._lock:
            best_key, best_len = None, 0
            for key, entry in self._entries.items():
                if entry.adapter != adapter:
                    continue
                n = common_prefix(entry.tokens, tokens)
                if n > best_len:
                    best_key, best_len = key, n
            if best_key is None:
                return None, 0
            self._entries.move_to_end(best_key)
            return self._entries[best_key], best_len

    def covers(self, tokens: np.ndarray, adapter: str | None) -> bool:
        """Is a state for ``tokens`` (or a longer prompt starting with them) saved already?"""
        with self._lock:
            return any(
                e.adapter == adapter
                and len(e.tokens) >= len(tokens)
                and common_prefix(e.tokens, tokens) == len(tokens)
                for e in self._entries.values()
            )

    def put(self, state: SavedState) -> bool:
        """Keep ``state``; drop the entries it makes redundant, then the least recently used
        ones until the budget holds. Returns whether it was kept."""
        with self._lock:
            if state.nbytes > self.budget_bytes:
                self.stats.oversize += 1
                return False
            for key in [
                k
                for k, e in self._entries.items()
                if e.adapter == state.adapter
                and len(e.tokens) <= len(state.tokens)
                and common_prefix(e.tokens, state.tokens) == len(e.tokens)
            ]:
                self._remove(key)
            while self._entries and self.stats.bytes + state.nbytes > self.budget_bytes:
                self._remove(next(iter(self._entries)))
                self.stats.evictions += 1
            self._entries[self._next] = state
            self._next += 1
            self.stats.saves += 1
            self.stats.bytes += state.nbytes
            self.stats.entries = len(self._entries)
            return True

    def restored(self, state: SavedState, ok: bool, shared: int) -> None:
        """Count a restore of ``state`` (``shared`` prompt tokens); a failed one forgets it."""
        with self._lock:
            if ok:
                self.stats.hits += 1
                self.stats.restored_tokens += shared
                return
            self.stats.restore_failures += 1
            for key, e in list(self._entries.items()):
                if e is state:
                    self._remove(key)

    def _remove(self, key: int) -> None:
        entry = self._entries.pop(key)
        self.stats.bytes -= entry.nbytes
        self.stats.entries = len(self._entries)


def save_sequence(ctx: Any, tokens: np.ndarray, adapter: str | None, seq_id: int = 0) -> SavedState | None:
    """Copy sequence ``seq_id``'s KV cells (which must hold exactly ``tokens``) to host RAM.
    ``None`` when llama.cpp wrote nothing."""
    size = llama_cpp.llama_state_seq_get_size(ctx, seq_id)
    if size <= 0:
        return None
    buf = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(ctx, buf, size, seq_id)
    if written <= 0:
        return None
    return SavedState(tokens=tokens.copy(), adapter=adapter, data=buf, nbytes=int(written))


def restore_sequence(ctx: Any, state: SavedState, seq_id: int = 0) -> bool:
    """Replace sequence ``seq_id``'s KV cells by ``state``. False when llama.cpp refused it
    (the sequence is then empty and the caller evaluates the prompt from the start)."""
    mem = llama_cpp.llama_get_memory(ctx)
    llama_cpp.llama_memory_seq_rm(mem, seq_id, -1, -1)
    read = llama_cpp.llama_state_seq_set_data(ctx, state.data, state.nbytes, seq_id)
    if read <= 0:
        llama_cpp.llama_memory_seq_rm(mem, seq_id, -1, -1)
        return False
    return True
