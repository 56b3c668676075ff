"""Input identity for distillation datasets: normalisation, the train/holdout split, and
near-duplicate detection.

The split is a hash of the *normalised input alone* (lower case, punctuation and runs of
whitespace folded), so a rebuild with more traces, another contract version or other
redaction settings never moves an example across the split, and trivial variants of an
input (case, punctuation) always land on the same side. Near-duplicates are found by the
Jaccard similarity of word 3-shingles, compared only within a bucket (one contract).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["NearDupIndex", "SPLIT_SALT", "input_text", "normalise", "shingles", "split_of"]

SPLIT_SALT = "modelladder-split-v1"


def input_text(messages: Iterable[Mapping[str, Any]]) -> str:
    parts = []
    for m in messages:
        content = m.get("content")
        if not isinstance(content, str):
            content = json.dumps(content, sort_keys=True, ensure_ascii=False)
        parts.append(f"{m.get('role')}: {content}")
    return "\n".join(parts)


def normalise(text: str) -> str:
    """Lower case, punctuation and runs of whitespace folded to one space."""
    return " ".join(re.sub(r"[\W_]+", " ", text.lower()).split())


def split_of(key: str, holdout: float) -> str:
    """``"holdout"`` or ``"train"``, from a hash of the normalised input only (stable forever)."""
    h = hashlib.sha256(f"{SPLIT_SALT}\0{key}".encode()).digest()
    return "holdout" if int.from_bytes(h[:8], "big") / 2**64 < holdout else "train"


def shingles(key: str) -> frozenset[str]:
    words = key.split()
    if len(words) < 3:
        return frozenset(words)
    return frozenset(" ".join(words[i : i + 3]) for i in range(len(words) - 2))


class NearDupIndex:
    """Near-duplicate detection by word-3-shingle Jaccard, within a bucket (a contract)."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self._exact: set[tuple[str, str]] = set()
        self._buckets: dict[str, list[frozenset[str]]] = {}

    def seen(self, bucket: str, key: str) -> bool:
        if (bucket, key) in self._exact:
            return True
        if self.threshold >= 1.0:
            return False
        sh = shingles(key)
        n = len(sh)
        for other in self._buckets.get(bucket, ()):
            m = len(other)
            if min(n, m) < self.threshold * max(n, m):  # Jaccard <= min/max: cannot reach it
                continue
            inter = len(sh & other)
            if inter and inter / (n + m - inter) >= self.threshold:
                return True
        return False

    def add(self, bucket: str, key: str) -> None:
        self._exact.add((bucket, key))
        if self.threshold < 1.0:
            self._buckets.setdefault(bucket, []).append(shingles(key))
