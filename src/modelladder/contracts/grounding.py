"""Grounded strings: narrow a grammar so free-text string values are spans of the user text.

Why: most wrong tool calls of a 135M model are not malformed (the grammar already rules that
out) but carry a plausible string the user never wrote ("Myself" for "Lionel Messi"). On
BFCL ``simple_python`` 100 of SmolLM2's 121 wrong-string answers had the right value written
in the question, and 130 of the 141 strings in its right answers were copied from it. So a
small rung may be told to *copy*: every string argument (or, for a ``JsonSchema`` step, every
string field) without its own vocabulary (``enum``, ``const``, ``pattern``, ``format``) must be
a span of whole words of the user messages (case is free, so "paris" may come from "Paris").

This narrows *decoding* only. It is a rung's strategy (``ground_strings = true`` in the fleet
file), not part of the step's contract: validation still uses the contract as declared, so a
bigger rung (or a teacher) whose right answer is not a verbatim span is not rejected.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

MAX_SPAN_WORDS = 12  # longer spans are rare as argument values; the pattern grows with n * this
MAX_TEXT_WORDS = 400  # beyond this the grammar costs more to build than a step takes: do not narrow
_WORD = re.compile(r"[^\W_](?:[\w'.,:/@#&+-]*[^\W_])?")  # inner punctuation stays: "3.5", "e-mail"
_RUST_META = set("\\.+*?()|[]{}^$#&-~")


def _escape(text: str) -> str:
    """Escape for Rust's regex syntax (llguidance) that Python's ``re`` reads the same way."""
    out = []
    for ch in text:
        if ch in _RUST_META:
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        else:
            out.append(ch)
    return "".join(out)


def span_pattern(text: str, max_words: int = MAX_SPAN_WORDS) -> str | None:
    """An anchored, case-insensitive regex matching every span of 1..``max_words`` whole words
    of ``text`` (with the text between them as written), or ``None`` when ``text`` has no word
    or more than ``MAX_TEXT_WORDS`` of them.

    Each start word opens a chain of optional continuations, so the regex is a trie of the
    spans: linear in ``len(words) * max_words``, not quadratic in the text.
    """
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if not words or len(words) > MAX_TEXT_WORDS:
        return None
    alternatives: set[str] = set()
    for i in range(len(words)):
        last = min(len(words), i + max_words) - 1
        tail = ""
        for j in range(last, i, -1):  # build innermost-first: (gap w_j tail)?
            gap = text[words[j - 1][1] : words[j][0]]
            tail = f"(?:{_escape(gap)}{_escape(text[words[j][0] : words[j][1]])}{tail})?"
        alternatives.add(_escape(text[words[i][0] : words[i][1]]) + tail)
    return "^(?i:" + "|".join(sorted(alternatives)) + ")$"


_OWN_VOCABULARY = ("enum", "const", "pattern", "format")
_NESTED = ("items", "prefixItems", "additionalProperties", "anyOf", "oneOf", "allOf")


def ground_schema(schema: Any, pattern: str) -> Any:
    """A copy of a JSON Schema in which every free ``string`` (no own vocabulary) gets ``pattern``.

    Walks properties, items, prefixItems, additionalProperties and the anyOf/oneOf/allOf
    members; ``$defs`` too. Strings with a vocabulary of their own are left alone: the
    value comes from the schema, not from the user.
    """
    if isinstance(schema, list):
        return [ground_schema(s, pattern) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: ground_schema(v, pattern) if k in _NESTED else v for k, v in schema.items()}
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        if isinstance(schema.get(key), dict):
            out[key] = {name: ground_schema(sub, pattern) for name, sub in schema[key].items()}
    if _is_free_string(schema):
        out["pattern"] = pattern
    return out


def _is_free_string(schema: dict[str, Any]) -> bool:
    return schema.get("type") in ("string", ["string"]) and not any(k in schema for k in _OWN_VOCABULARY)


def ground_tools(tools: Sequence[dict[str, Any]], text: str) -> list[dict[str, Any]] | None:
    """``tools`` (normalised: name/description/parameters) with free strings grounded in ``text``;
    ``None`` when ``text`` has no word to copy (then nothing is narrowed)."""
    pattern = span_pattern(text)
    if pattern is None:
        return None
    return [{**t, "parameters": ground_schema(t["parameters"], pattern)} for t in tools]


__all__ = ["MAX_SPAN_WORDS", "MAX_TEXT_WORDS", "ground_schema", "ground_tools", "span_pattern"]
