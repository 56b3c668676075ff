"""Redaction of training text: e-mail addresses, phone numbers, configured patterns.

Why before training: an adapter memorises what it is trained on and will happily repeat a
customer's phone number in another customer's step. The same redaction is applied to the
input and to the teacher's answer, so an answer that copied a value from the input still
agrees with it (both say ``<EMAIL>``).

The phone pattern wants phone *shape* (7-15 digits in groups with separators or a leading
``+``), so dates (``2024-01-15``), times, prices and plain IDs are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelladder.distill.errors import DistillError

__all__ = ["EMAIL", "PHONE", "Redactor"]

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
# +CC (optional), an optional (area) group, then 2-4 groups of 2-4 digits joined by - . or space.
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,3}(?![\w-])"
    r"|(?<![\w+])\+\d{7,15}(?!\w)"
)
_DATE_LIKE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")


def _phone_sub(m: re.Match[str]) -> str:
    text = m.group(0)
    digits = sum(ch.isdigit() for ch in text)
    if digits < 7 or digits > 15 or _DATE_LIKE.match(text.strip()):
        return text
    if not (text.startswith("+") or "(" in text) and not re.search(r"\d[\s.-]\d", text):
        return text
    return "<PHONE>"


@dataclass(frozen=True)
class Redactor:
    """Applies the configured redactions to strings, recursively through JSON values."""

    emails: bool = False
    phones: bool = False
    patterns: tuple[str, ...] = ()
    _compiled: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = []
        for p in self.patterns:
            try:
                compiled.append(re.compile(p))
            except re.error as exc:
                raise DistillError(
                    f"--redact pattern {p!r} is not a valid regular expression: {exc}"
                ) from exc
        object.__setattr__(self, "_compiled", tuple(compiled))

    @property
    def active(self) -> bool:
        return self.emails or self.phones or bool(self.patterns)

    def describe(self) -> list[str]:
        """What the manifest records (the patterns themselves, so a rebuild can be compared)."""
        out = ["email"] if self.emails else []
        out += ["phone"] if self.phones else []
        return out + [f"regex:{p}" for p in self.patterns]

    def text(self, s: str) -> str:
        if self.emails:
            s = EMAIL.sub("<EMAIL>", s)
        if self.phones:
            s = PHONE.sub(_phone_sub, s)
        for rx in self._compiled:
            s = rx.sub("<REDACTED>", s)
        return s

    def value(self, v: Any) -> Any:
        """Strings inside lists/dicts redacted; keys are left alone (they are schema, not data)."""
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, dict):
            return {k: self.value(x) for k, x in v.items()}
        return v

    def messages(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**m, "content": self.value(m.get("content"))} for m in messages]
