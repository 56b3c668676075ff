"""``Choice``: the output is exactly one label out of a fixed list (classification, routing).

Canonical text: the bare label. ``parse`` ignores surrounding whitespace only -- no case
folding, no quote stripping -- so "Yes" is not "yes": a label set that needs fuzziness
should list the variants.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llguidance import LLMatcher

from modelladder.contracts._common import ensure_grammar
from modelladder.contracts.base import Contract, ContractError, Verdict

__all__ = ["Choice"]


@dataclass(frozen=True)
class Choice(Contract):
    """Output must be one of ``labels`` (value: the label).

    Labels must be non-empty, unique strings without surrounding whitespace (``parse``
    strips the output, so such a label could never be matched).
    """

    labels: Sequence[str]
    kind: str = field(default="choice", init=False)
    _grammar: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.labels, str) or not isinstance(self.labels, Sequence):
            raise ContractError(
                f"Choice needs a list of label strings, got {type(self.labels).__name__}; "
                "e.g. Choice(['yes', 'no'])"
            )
        labels = tuple(self.labels)
        if not labels:
            raise ContractError("Choice needs at least one label; e.g. Choice(['yes', 'no'])")
        for lab in labels:
            if not isinstance(lab, str) or not lab:
                raise ContractError(f"Choice label {lab!r} must be a non-empty string")
            if lab != lab.strip():
                raise ContractError(
                    f"Choice label {lab!r} has surrounding whitespace; outputs are stripped "
                    f"before matching, so use {lab.strip()!r}"
                )
        dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
        if dupes:
            raise ContractError(f"Choice labels must be unique; {dupes} listed more than once")
        object.__setattr__(self, "labels", labels)
        # Lark string literals take JSON-style escapes; one alternative per label.
        lark = "start: " + " | ".join(json.dumps(lab, ensure_ascii=False) for lab in labels) + "\n"
        object.__setattr__(
            self, "_grammar", ensure_grammar(LLMatcher.grammar_from_lark(lark), "Choice labels")
        )

    def __hash__(self) -> int:
        return hash(self.digest())

    def grammar(self) -> str:
        return self._grammar

    def parse(self, text: str) -> Verdict:
        answer = text.strip()
        if answer in self.labels:
            return Verdict.passed(answer)
        shown = answer if len(answer) <= 60 else answer[:57] + "..."
        return Verdict.failed("not_a_choice", f"{shown!r} is not one of {list(self.labels)}")

    def instructions(self) -> str:
        listed = "\n".join(f"- {lab}" for lab in self.labels)
        return f"Reply with exactly one of the following labels, and nothing else:\n{listed}"

    def openai_request(self) -> dict[str, Any]:
        # Strict mode needs every property required and the object closed.
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "choice",
                    "schema": {
                        "type": "object",
                        "properties": {"label": {"type": "string", "enum": list(self.labels)}},
                        "required": ["label"],
                        "additionalProperties": False,
                    },
                    "strict": True,
                },
            }
        }

    def from_openai_message(self, message: dict[str, Any]) -> str:
        """Unwrap ``{"label": X}``; anything else (e.g. a bare label) is passed on for ``parse``."""
        content = message.get("content") or ""
        try:
            obj = json.loads(content)
        except (ValueError, TypeError, RecursionError):
            return content if isinstance(content, str) else ""
        if isinstance(obj, dict) and isinstance(obj.get("label"), str):
            return obj["label"]
        return content

    def spec(self) -> dict[str, Any]:
        return {"labels": list(self.labels)}
