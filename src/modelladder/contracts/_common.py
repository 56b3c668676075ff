"""Helpers shared by the contract kinds: JSON Schema checks, grammar checks, strict JSON.

Kept private: the public surface is the contract classes. Everything here is pure Python
except :func:`ensure_grammar`, which asks llguidance (no tokenizer, no model) whether a
grammar compiles, so a declaration that could never be decoded fails when it is written.
"""

from __future__ import annotations

import copy
import json
import re
from typing import TYPE_CHECKING, Any

import jsonschema
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from jsonschema.protocols import Validator
from llguidance import LLMatcher

from modelladder.contracts.base import ContractError

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions  # a TypedDict that exists in the type stubs only

# Options for every JSON grammar. Flexible whitespace: forcing a compact style the model
# does not use cost 20+ points of accuracy on a 135M model: 20/40 instead of 29/40 AST-correct on
# BFCL simple_python with SmolLM2-135M (docs/measurements.md).
JSON_GRAMMAR_OPTIONS: JsonCompileOptions = {"whitespace_flexible": True}
# One space after ':' and ',' and no other whitespace (the style the bundled models write):
# for a last-resort forced call only, where free whitespace let Gemma pad until max_tokens.
COMPACT_JSON: JsonCompileOptions = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}

# Keywords whose value is one subschema / a mapping of subschemas / a list of subschemas.
_SUB_ONE = (
    "additionalProperties",
    "unevaluatedProperties",
    "items",
    "additionalItems",
    "unevaluatedItems",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
)
_SUB_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUB_LIST = ("prefixItems", "anyOf", "oneOf")


def check_json_schema(schema: Any, what: str) -> Validator:
    """Check ``schema`` against the Draft 2020-12 meta-schema and return a validator for it."""
    if not isinstance(schema, dict):
        raise ContractError(
            f"{what} must be a JSON Schema object (a dict), got {type(schema).__name__}; "
            "pass e.g. {'type': 'object', 'properties': {...}}"
        )
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ContractError(
            f"{what} is not a valid JSON Schema (Draft 2020-12) at {where}: "
            f"{exc.message}; fix the schema there"
        ) from None
    # format_checker: llguidance enforces "format" (date-time, email...) in the grammar, so
    # validation asserts it too (formats whose checker needs a missing package pass).
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def closed_for_grammar(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` where every object schema that lists ``properties`` and says
    nothing about ``additionalProperties`` gets ``"additionalProperties": false``.

    Why: an open object lets a small model invent keys until it runs out of tokens
    (measured: 29/40 -> 17/40 BFCL items on SmolLM2-135M, p90 1.5 s -> 4 s). Used for the
    grammar (and the remote request) only -- validation keeps the schema as declared.
    Direct members of ``allOf`` are left open: closing them would make the branches
    reject each other's properties. Objects with ``unevaluatedProperties`` are left alone.
    """
    out = copy.deepcopy(schema)
    _close(out, in_all_of=False)
    return out


def _close(node: Any, *, in_all_of: bool) -> None:
    if not isinstance(node, dict):
        return
    if (
        "properties" in node
        and "additionalProperties" not in node
        and "unevaluatedProperties" not in node
        and not in_all_of
    ):
        node["additionalProperties"] = False
    for key in _SUB_ONE:
        if key in node:
            sub = node[key]
            if isinstance(sub, list):  # pre-2020 tuple form of "items"
                for s in sub:
                    _close(s, in_all_of=False)
            else:
                _close(sub, in_all_of=False)
    for key in _SUB_MAP:
        if isinstance(node.get(key), dict):
            for s in node[key].values():
                _close(s, in_all_of=False)
    for key in _SUB_LIST:
        if isinstance(node.get(key), list):
            for s in node[key]:
                _close(s, in_all_of=False)
    if isinstance(node.get("allOf"), list):
        for s in node["allOf"]:
            _close(s, in_all_of=True)


def ensure_grammar(grammar: str, what: str) -> str:
    """Raise :class:`ContractError` unless llguidance compiles ``grammar``; return it."""
    problem = LLMatcher.validate_grammar(grammar)
    if problem:
        first = problem.strip().splitlines()[0] if problem.strip() else problem
        raise ContractError(
            f"{what} cannot be compiled to a constrained-decoding grammar by llguidance: "
            f"{first}; use only features llguidance supports "
            "(https://github.com/guidance-ai/llguidance/blob/main/docs/json_schema.md)"
        )
    return grammar


def format_error(err: ValidationError, prefix: str = "$") -> str:
    """``$.a.b[0]: 5 is greater than the maximum of 3`` -- one line a human can act on."""
    path = prefix
    for p in err.absolute_path:
        path += f"[{p}]" if isinstance(p, int) else f".{p}"
    return f"{path}: {err.message}"


def best_error(validator: Validator, instance: Any) -> ValidationError | None:
    """The most relevant validation error, or None when ``instance`` is valid."""
    return best_match(validator.iter_errors(instance))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_strict(text: str) -> Any:
    """``json.loads`` that refuses NaN/Infinity (not JSON; a schema cannot constrain them).

    Raises ValueError (json.JSONDecodeError included) or RecursionError on bad input.
    """
    return json.loads(text, parse_constant=_reject_constant)


_FENCE = re.compile(r"\A```[a-zA-Z0-9_-]*[ \t]*\n(.*?)\n?```\Z", re.S)


def strip_fence(text: str) -> str:
    """Drop one surrounding Markdown code fence (remote models add them; the grammar never does)."""
    m = _FENCE.match(text.strip())
    return m.group(1) if m else text


def dumps_canonical(value: Any) -> str:
    """JSON as the contracts write it: one line, ``", "``/``": "`` separators, UTF-8 kept."""
    return json.dumps(value, ensure_ascii=False)
