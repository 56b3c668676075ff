"""``Grammar``: the output is a sentence of a context-free grammar written in Lark syntax.

Two engines read the same grammar text: llguidance decodes it natively (its Lark dialect),
and the ``lark`` package parses the finished output (Earley, so any context-free grammar
works). Validation never trusts the decoder: a grammar bug in one engine, or an output a
remote rung wrote without any constraint, is caught by the other. A grammar either engine
refuses is refused at declaration (:class:`ContractError`), so the accepted syntax is what
both share: rules in lower case, terminals in upper case, string literals (with the ``i``
flag), ``/regex/`` terminals, ``? * +`` and ``[...]``, ``%ignore``. llguidance-only
extensions (``%json``, lazy regexes, ``max_tokens``) are refused by ``lark``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lark as lark_pkg
from llguidance import LLMatcher

from modelladder.contracts._common import ensure_grammar
from modelladder.contracts.base import Contract, ContractError, Verdict

__all__ = ["Grammar"]


@dataclass(frozen=True)
class Grammar(Contract):
    """Output must parse under the Lark grammar ``lark`` from rule ``start`` (value: the
    text, stripped of surrounding whitespace). ``description`` tells a model what the
    language is (the grammar itself is shown too)."""

    lark: str
    start: str = "start"
    description: str = ""
    kind: str = field(default="grammar", init=False)
    _parser: lark_pkg.Lark = field(init=False, repr=False, compare=False)
    _grammar: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.lark, str) or not self.lark.strip():
            raise ContractError('Grammar needs Lark grammar text, e.g. Grammar(\'start: "yes" | "no"\')')
        try:
            parser = lark_pkg.Lark(self.lark, start=self.start, parser="earley")
        except lark_pkg.exceptions.LarkError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ContractError(
                f"Grammar: the lark package cannot read this grammar ({first}); "
                "use Lark syntax that both lark and llguidance accept"
            ) from None
        object.__setattr__(self, "_parser", parser)
        text = self.lark if self.start == "start" else f"start: {self.start}\n{self.lark}"
        try:
            compiled = LLMatcher.grammar_from_lark(text)
        except (ValueError, RuntimeError) as exc:
            raise ContractError(f"Grammar: llguidance cannot read this grammar ({exc})") from None
        object.__setattr__(self, "_grammar", ensure_grammar(compiled, "Grammar"))

    def __hash__(self) -> int:
        return hash(self.digest())

    def grammar(self) -> str:
        return self._grammar

    def parse(self, text: str) -> Verdict:
        candidate = text.strip()
        try:
            self._parser.parse(candidate)
        except lark_pkg.exceptions.UnexpectedInput as exc:
            where = f"line {exc.line}, column {exc.column}" if getattr(exc, "line", -1) != -1 else "the end"
            shown = candidate if len(candidate) <= 80 else candidate[:77] + "..."
            return Verdict.failed("grammar_mismatch", f"{shown!r} does not parse at {where}")
        except lark_pkg.exceptions.LarkError as exc:
            return Verdict.failed("grammar_mismatch", str(exc).splitlines()[0])
        return Verdict.passed(candidate)

    def instructions(self) -> str:
        what = f"{self.description.strip()} " if self.description.strip() else ""
        return (
            f"{what}Reply with text in the language of this Lark grammar (start rule `{self.start}`), "
            f"and nothing else:\n{self.lark.strip()}"
        )

    def openai_request(self) -> dict[str, Any]:
        return {}  # no portable structured field for grammars: plain text, validated afterwards

    def spec(self) -> dict[str, Any]:
        return {"lark": self.lark, "start": self.start, "description": self.description}
