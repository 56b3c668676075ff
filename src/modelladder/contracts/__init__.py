"""Contracts: what a step's output must satisfy, as a decoding grammar and as a validator.

Kinds: :class:`JsonSchema` (a JSON value / Pydantic model), :class:`ToolCalls` (function
calls), :class:`Choice` (one label of a list), :class:`Regex` (text matching a pattern),
:class:`Grammar` (a sentence of a Lark grammar), :class:`Sql` (one SQL statement over a schema).
:func:`contract_from` turns the common shorthands into a contract.
"""

from __future__ import annotations

from typing import Any

import pydantic

from modelladder.contracts.base import Check, Contract, ContractError, Verdict
from modelladder.contracts.checks import check, grounded_arguments
from modelladder.contracts.choice import Choice
from modelladder.contracts.grammar import Grammar
from modelladder.contracts.json_schema import JsonSchema
from modelladder.contracts.regex import Regex
from modelladder.contracts.sql import Sql
from modelladder.contracts.tools import Answer, ToolCalls


def contract_from(obj: Any) -> Contract:
    """A Contract passes through; a Pydantic model class or a JSON Schema dict becomes
    :class:`JsonSchema`; a list/tuple of strings becomes :class:`Choice`."""
    if isinstance(obj, Contract):
        return obj
    if isinstance(obj, type) and issubclass(obj, pydantic.BaseModel):
        return JsonSchema(obj)
    if isinstance(obj, dict):
        return JsonSchema(obj)
    if isinstance(obj, list | tuple) and obj and all(isinstance(x, str) for x in obj):
        return Choice(list(obj))
    hint = " (for a pattern use Regex(pattern))" if isinstance(obj, str) else ""
    raise ContractError(
        f"cannot make a contract from {type(obj).__name__} {obj!r:.60}{hint}; pass a Contract, "
        "a Pydantic model class, a JSON Schema dict, or a list of label strings"
    )


def contract_from_spec(data: dict[str, Any]) -> Contract:
    """Rebuild a contract from ``{"kind", "spec"}`` as stored with every trace. Extra checks
    are Python callables and are not stored: re-attach them if the use needs them."""
    kind, spec = data.get("kind"), data.get("spec") or {}
    if kind == "json_schema":
        return JsonSchema(spec["schema"], name=spec.get("name"))
    if kind == "tool_calls":
        answer: bool | JsonSchema = False
        stored = spec.get("answer")
        if stored is not None:
            answer = True if stored.get("kind") == "text" else contract_from_spec(stored)  # type: ignore[assignment]
        return ToolCalls(
            spec["tools"],
            parallel=spec["parallel"],
            allow_no_call=spec["allow_no_call"],
            tool_choice=spec.get("tool_choice", "auto"),
            answer=answer,
        )
    if kind == "choice":
        return Choice(spec["labels"])
    if kind == "regex":
        return Regex(spec["pattern"])
    if kind == "grammar":
        return Grammar(
            spec["lark"], start=spec.get("start", "start"), description=spec.get("description", "")
        )
    if kind == "sql":
        return Sql(
            spec["schema"], dialect=spec["dialect"], allow=tuple(spec["allow"]), max_rows=spec.get("max_rows")
        )
    raise ContractError(f"unknown contract kind {kind!r} in a stored spec")


__all__ = [
    "Answer",
    "Check",
    "Choice",
    "Contract",
    "ContractError",
    "Grammar",
    "JsonSchema",
    "Regex",
    "Sql",
    "ToolCalls",
    "Verdict",
    "check",
    "contract_from",
    "contract_from_spec",
    "grounded_arguments",
]
