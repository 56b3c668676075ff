"""Ready-made post-validation checks, and the ``check`` decorator to name your own.

A check catches what a grammar cannot: a small model emits a perfectly typed call with a
hallucinated argument ("Paris" when the user said "Lyon"). Checks run only after the
structural parse passed, and return ``None`` (pass) or a failure detail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pydantic

from modelladder.contracts.base import Check, CheckFn


def check(name: str | CheckFn) -> Any:
    """Name a check function: ``@check("positive")`` above ``def f(value, messages)``.

    Bare ``@check`` uses the function's ``__name__``. The name appears in the failure
    reason as ``check_failed:<name>``.
    """
    if callable(name):
        fn = name
        return Check(name=getattr(fn, "__name__", "check"), fn=fn)
    if not isinstance(name, str) or not name:
        raise ValueError("check name must be a non-empty string")

    def wrap(fn: CheckFn) -> Check:
        return Check(name=name, fn=fn)

    return wrap


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def user_text(messages: Sequence[dict[str, Any]], *, normalise: bool = True) -> str:
    """All user-message text, normalised (case-folded, whitespace collapsed) unless
    ``normalise=False``; understands both string content and the list-of-parts form
    (``{"type": "text", "text": ...}``)."""
    chunks: list[str] = []
    for m in messages:
        if m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            chunks.append(content)
        elif isinstance(content, list):
            chunks.extend(
                p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
    joined = "\n".join(chunks)
    return _norm(joined) if normalise else joined


def _leaves(value: Any, path: str, key: str = "") -> Iterator[tuple[str, str, str | int | float]]:
    """(path, nearest object key, leaf) for every string and number leaf."""
    if isinstance(value, pydantic.BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
        yield path, key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k), str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]", key)


def _number_in(x: int | float, text: str) -> bool:
    """Is the number written in the text as a number of its own (``250`` matches "250 US
    dollars" and "250.00", not "2500" or "order 1250")?"""
    forms = {repr(x), f"{x:g}"} if isinstance(x, float) and not x.is_integer() else {str(int(x))}
    return any(re.search(rf"(?<![\d.]){re.escape(f)}(?:\.0+)?(?![\d])", text) for f in forms)


def _is_tool_calls(value: Any) -> bool:
    return (
        isinstance(value, list)
        and all(isinstance(c, dict) and set(c) == {"name", "arguments"} for c in value)
        and bool(value)
    )


def grounded_arguments(min_len: int = 3, *, skip: Iterable[str] = ()) -> Check:
    """A check named ``"grounded"``: every string and number argument value of every tool
    call (or every leaf of a JSON value / Pydantic model) must appear in the user messages:
    strings case-insensitively with whitespace collapsed, numbers as numbers of their own.

    ``min_len``: shorter strings are not checked (units, "C", "US" -- too short to tell
    grounding from coincidence). ``skip``: argument names (last path component) not to
    check, e.g. enum-valued arguments whose values come from the schema, not the user.
    """
    skipped = frozenset(skip)

    def grounded(value: Any, messages: Sequence[dict[str, Any]]) -> str | None:
        haystack = user_text(messages)
        if _is_tool_calls(value):
            items: list[tuple[str, str, str | int | float]] = []
            for c in value:
                items.extend((f"{c['name']}({p})", k, s) for p, k, s in _leaves(c["arguments"], ""))
        else:
            items = list(_leaves(value, "value"))
        for where, key, s in items:
            if key in skipped:
                continue
            if isinstance(s, str):
                needle = _norm(s)
                if len(needle) < min_len or needle in haystack:
                    continue
            elif _number_in(s, haystack):
                continue
            return f"{where} = {s!r} does not appear in the user messages"
        return None

    return Check(name="grounded", fn=grounded)


__all__ = ["check", "grounded_arguments", "user_text"]
