"""Words of a text for lexical relevance: lower case, identifiers split (``get_weather`` and
``getWeather`` become ``get weather``), a few English function words and plural ``s`` dropped.
Shared by tool selection and anything else that scores text against text without a model."""

from __future__ import annotations

import re

__all__ = ["terms"]

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    {
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "from",
        "by",
        "with",
        "and",
        "or",
        "is",
        "are",
        "be",
        "was",
        "were",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "i",
        "you",
        "me",
        "my",
        "we",
        "our",
        "your",
        "can",
        "could",
        "would",
        "should",
        "will",
        "please",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "as",
        "if",
        "then",
        "than",
        "so",
        "what",
        "which",
        "who",
        "how",
        "when",
        "where",
        "there",
        "here",
        "into",
        "about",
        "all",
        "any",
        "some",
    }
)


def terms(text: str) -> list[str]:
    """The indexable words of ``text``, in order (repeats kept: they count)."""
    out = []
    for w in _WORD.findall(_CAMEL.sub(" ", text).replace("_", " ").lower()):
        if w in _STOP:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return out
