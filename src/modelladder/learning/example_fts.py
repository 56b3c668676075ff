"""The example index's full-text side: the text FTS5 indexes and the query BM25 ranks by.

FTS5's ``unicode61`` tokenizer with ``_`` as a token character keeps a tool name such as
``get_weather`` one token; :func:`fts_text` adds the words of every snake_case or camelCase
identifier, so the same example is also found by "weather". Queries drop English function
words (they stay indexed) and match any remaining term, within one step key.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

__all__ = ["BM25_VERSION", "MAX_QUERY_TERMS", "fold", "fts_text", "ktok", "match", "query_terms", "tokens"]

BM25_VERSION = "fts5-unicode61-split-1"  # bump when fts_text, the tokenizer or match changes
MAX_QUERY_TERMS = 64

# English function words, left out of a *query* (they stay indexed): in nearly every example of
# a step, they add almost nothing to BM25 and most of the cost of an OR query at 100k examples.
_STOP = frozenset((
    "a", "an", "the", "of", "to", "in", "on", "at", "for", "from", "by", "with", "and", "or", "is", "are",
    "be", "was", "were", "it", "its", "this", "that", "these", "those", "i", "you", "me", "my", "we",
    "our", "your", "can", "could", "would", "should", "will", "please", "do", "does", "did", "have", "has",
    "had", "as", "if", "then", "than", "so", "what", "which", "who", "how", "when", "where", "there",
    "here", "into", "about", "all", "any", "some",
))  # fmt: skip


_IDENT = re.compile(r"\w+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def fts_text(text: str) -> str:
    """The text as FTS5 indexes it: the text itself (``_`` is a token character, so a tool name
    such as ``get_weather`` stays one token) followed by the words of every snake_case or
    camelCase identifier in it, so ``get_weather`` is also found by "weather"."""
    extra: list[str] = []
    for tok in _IDENT.findall(text):
        words = [w for part in tok.split("_") for w in _CAMEL.findall(part)]
        if len(words) > 1:
            extra.extend(w.lower() for w in words)
    return f"{text} {' '.join(extra)}" if extra else text


def fold(token: str) -> str:
    """``token`` without diacritics, as unicode61 indexes it ("café" as "cafe")."""
    return "".join(c for c in unicodedata.normalize("NFD", token) if not unicodedata.combining(c))


def tokens(text: str) -> list[str]:
    """The body tokens FTS5's tokenizer (``unicode61``, ``_`` a token character) makes of
    :func:`fts_text` of ``text``: runs of letters, digits and ``_``, lower-cased, Latin
    diacritics removed (the in-memory BM25 scorer counts these; exotic scripts may differ from
    SQLite's tables in a character or two, which only shifts a score)."""
    toks = _IDENT.findall(fts_text(text).lower())
    if text.isascii():
        return toks
    return [f for f in map(fold, toks) if f]


def query_terms(query: str) -> list[str]:
    """The distinct terms a query is matched by: its tokens (identifiers split as in
    :func:`fts_text`) less English function words, at most :data:`MAX_QUERY_TERMS`."""
    terms: dict[str, None] = {}
    for tok in _IDENT.findall(fts_text(query)):
        if tok.lower() in _STOP:
            continue
        terms.setdefault(tok.lower(), None)
        if len(terms) >= MAX_QUERY_TERMS:
            break
    return list(terms)


def match(key: str, query: str) -> str | None:
    """The FTS5 query: this key's examples AND any of the query's terms (BM25 ranks them)."""
    terms = query_terms(query)
    if not terms:
        return None
    return f'ktok : "{ktok(key)}" AND (' + " OR ".join(f'"{t}"' for t in terms) + ")"


def ktok(key: str) -> str:
    # The key as one FTS token: filtering in the MATCH lets FTS5 intersect posting lists
    # instead of scoring every example of every step and filtering afterwards.
    return "k" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]
