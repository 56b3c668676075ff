"""``Regex``: the output is text matching a regular expression (IDs, dates, short codes).

The same pattern is read by two engines: llguidance (Rust ``regex`` syntax, via derivre)
builds the decoding grammar, Python's ``re`` validates the finished text. They agree on
the common core (classes, ``\\d``/``\\w``/``\\s``, repetition, alternation, groups,
``(?P<n>...)``, ``(?i)``) and differ at the edges:

* Rust has no look-around, back-references or atomic groups -- ``(?=``, ``\\1``, ``(?>``;
* Python has no ``\\p{L}``-style Unicode classes, ``\\z``, or ``(?<name>...)`` groups;
* ``a{,3}`` is valid Python but not Rust; ``[[:alpha:]]`` is a POSIX class in Rust but a
  nested set in Python.

A pattern either engine cannot compile is refused at declaration (:class:`ContractError`).
The whole output must match (llguidance anchors implicitly; validation uses
``re.fullmatch``), so ``^``/``$`` are unnecessary.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from llguidance import LLMatcher

from modelladder.contracts._common import ensure_grammar
from modelladder.contracts.base import Contract, ContractError, Verdict

__all__ = ["Regex"]


@dataclass(frozen=True)
class Regex(Contract):
    """Output must match ``pattern`` in full (value: the matched text).

    Surrounding whitespace is ignored only when the text as given does not match, so a
    trailing newline from a remote model is forgiven but a pattern that allows whitespace
    still sees it.
    """

    pattern: str
    kind: str = field(default="regex", init=False)
    _re: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _grammar: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ContractError("Regex needs a non-empty pattern string, e.g. Regex(r'[A-Z]{3}-\\d{4}')")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # e.g. "possible nested set": a real semantic difference
                compiled = re.compile(self.pattern)
        except (re.error, FutureWarning, DeprecationWarning) as exc:
            raise ContractError(
                f"Regex pattern {self.pattern!r} is not valid for Python's re ({exc}); "
                "use syntax that both Python re and Rust regex accept"
            ) from None
        object.__setattr__(self, "_re", compiled)
        grammar = LLMatcher.grammar_from_regex(self.pattern)
        object.__setattr__(self, "_grammar", ensure_grammar(grammar, f"Regex pattern {self.pattern!r}"))

    def __hash__(self) -> int:
        return hash(self.digest())

    def grammar(self) -> str:
        return self._grammar

    def parse(self, text: str) -> Verdict:
        for candidate in (text, text.strip()):
            if self._re.fullmatch(candidate):
                return Verdict.passed(candidate)
        shown = text if len(text) <= 60 else text[:57] + "..."
        return Verdict.failed("regex_mismatch", f"{shown!r} does not match /{self.pattern}/")

    def instructions(self) -> str:
        return (
            f"Reply with text that matches the regular expression /{self.pattern}/ as a whole, "
            "and nothing else (no explanation, no quotes)."
        )

    def openai_request(self) -> dict[str, Any]:
        return {}  # no portable structured field for regexes: plain text, validated afterwards

    def spec(self) -> dict[str, Any]:
        return {"pattern": self.pattern}
