"""``JsonSchema``: the output is one JSON value conforming to a JSON Schema (or a Pydantic model).

Canonical text: the JSON value itself (``json.dumps`` style, one line). ``parse`` also takes
any whitespace layout and one surrounding Markdown code fence, because remote models add
them; the local grammar never produces either.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import pydantic
from jsonschema.protocols import Validator
from llguidance import LLMatcher

from modelladder.contracts._common import (
    JSON_GRAMMAR_OPTIONS,
    best_error,
    check_json_schema,
    closed_for_grammar,
    dumps_canonical,
    ensure_grammar,
    format_error,
    loads_strict,
    strip_fence,
)
from modelladder.contracts.base import Contract, ContractError, Verdict

__all__ = ["JsonSchema", "strict_compatible"]


def _is_model_class(obj: Any) -> TypeGuard[type[pydantic.BaseModel]]:
    return isinstance(obj, type) and issubclass(obj, pydantic.BaseModel)


def _response_name(raw: str) -> str:
    """OpenAI wants ``^[a-zA-Z0-9_-]{1,64}$`` for ``json_schema.name``."""
    name = re.sub(r"[^a-zA-Z0-9_-]+", "_", raw).strip("_")[:64]
    return name or "output"


def strict_compatible(schema: Any) -> bool:
    """Whether OpenAI's ``strict: true`` would accept ``schema``: every object closed and
    every property required. Sending ``strict: true`` otherwise gets a 400 from OpenAI."""
    if isinstance(schema, list):
        return all(strict_compatible(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    if "properties" in schema or schema.get("type") == "object":
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required", [])) != set(props):
            return False
    for key, sub in schema.items():
        if key in ("properties", "$defs", "definitions") and isinstance(sub, dict):
            if not all(strict_compatible(s) for s in sub.values()):
                return False
        elif key in ("items", "anyOf", "prefixItems", "additionalProperties") and not strict_compatible(sub):
            return False
    return True


@dataclass(frozen=True)
class JsonSchema(Contract):
    """Output must be a JSON value valid under ``schema`` (Draft 2020-12).

    ``schema`` is a JSON Schema dict or a Pydantic model class (its ``model_json_schema()``
    is used, and the :class:`Verdict` value is then a validated model instance instead of
    the parsed JSON). ``name`` labels the schema in OpenAI requests (default: the model
    class name or the schema's ``title``).

    The grammar closes objects (``additionalProperties: false`` wherever an object lists
    ``properties`` and leaves it unspecified, see :func:`closed_for_grammar`), because open
    objects make small models ramble; validation still applies the schema as declared, so
    a remote model adding a key is not failed for it.
    """

    schema: dict[str, Any] | type[pydantic.BaseModel]
    name: str | None = None
    kind: str = field(default="json_schema", init=False)

    _schema: dict[str, Any] = field(init=False, repr=False, compare=False)
    _model: type[pydantic.BaseModel] | None = field(init=False, repr=False, compare=False)
    _validator: Validator = field(init=False, repr=False, compare=False)
    _grammar_schema: dict[str, Any] = field(init=False, repr=False, compare=False)
    _grammar: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        model = self.schema if _is_model_class(self.schema) else None
        if model is not None:
            try:
                schema = model.model_json_schema()
            except Exception as exc:  # pydantic raises several kinds for unrepresentable types
                raise ContractError(
                    f"Pydantic model {model.__name__} has no JSON Schema ({exc}); "
                    "use JSON-representable field types"
                ) from None
        elif isinstance(self.schema, dict):
            schema = copy.deepcopy(self.schema)  # the caller's dict may change later; we must not
        else:
            raise ContractError(
                f"JsonSchema needs a JSON Schema dict or a pydantic.BaseModel subclass, "
                f"got {type(self.schema).__name__}"
            )
        set_ = object.__setattr__
        set_(self, "_model", model)
        set_(self, "_schema", schema)
        set_(self, "_validator", check_json_schema(schema, "JsonSchema schema"))
        set_(self, "_grammar_schema", closed_for_grammar(schema))
        grammar = LLMatcher.grammar_from_json_schema(self._grammar_schema, defaults=JSON_GRAMMAR_OPTIONS)
        set_(self, "_grammar", ensure_grammar(grammar, "JsonSchema schema"))
        if self.name is None:
            raw = model.__name__ if model is not None else str(schema.get("title") or "output")
            set_(self, "name", _response_name(raw))
        elif not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", self.name):
            raise ContractError(
                f"JsonSchema name {self.name!r} must match [a-zA-Z0-9_-]{{1,64}} "
                "(OpenAI's rule for json_schema.name); rename it"
            )

    def __hash__(self) -> int:
        return hash(self.digest())

    @property
    def json_schema(self) -> dict[str, Any]:
        """The schema as validated (a copy is not made: do not mutate)."""
        return self._schema

    def grammar_schema(self) -> dict[str, Any]:
        """The closed schema the grammar is built from (a copy), for grammars that embed it."""
        return copy.deepcopy(self._grammar_schema)

    def grammar(self) -> str:
        return self._grammar

    def grounded_grammar(self, text: str) -> str:
        from modelladder.contracts.grounding import ground_schema, span_pattern

        pattern = span_pattern(text)
        if pattern is None:
            return self._grammar
        try:
            grammar = LLMatcher.grammar_from_json_schema(
                ground_schema(self._grammar_schema, pattern), defaults=JSON_GRAMMAR_OPTIONS
            )
            return ensure_grammar(grammar, "JsonSchema schema")
        except ValueError:  # (a ContractError too) outgrew llguidance's lexer limit: do not narrow
            return self._grammar

    def parse(self, text: str) -> Verdict:
        body = strip_fence(text).strip()
        if not body:
            return Verdict.failed("empty_output", "the output is empty")
        try:
            value = loads_strict(body)
        except ValueError as exc:
            return Verdict.failed("parse_error", f"not valid JSON: {exc}")
        except RecursionError:
            return Verdict.failed("parse_error", "not valid JSON: nested too deeply")
        try:
            err = best_error(self._validator, value)
        except RecursionError:
            return Verdict.failed("schema_violation", "value nested too deeply to validate", value)
        if err is not None:
            return Verdict.failed("schema_violation", format_error(err), value)
        if self._model is None:
            return Verdict.passed(value)
        try:
            return Verdict.passed(self._model.model_validate(value))
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            return Verdict.failed(
                "schema_violation", f"$.{loc}: {first['msg']}" if loc else first["msg"], value
            )
        except Exception as exc:  # a model validator that raises something unexpected
            return Verdict.failed("schema_violation", f"{type(exc).__name__}: {exc}", value)

    def instructions(self) -> str:
        return (
            "Reply with a single JSON value that conforms to this JSON Schema, and nothing else "
            "(no explanation, no code fence):\n" + dumps_canonical(self._schema)
        )

    def openai_request(self) -> dict[str, Any]:
        # The closed schema, as for the local grammar. strict only where OpenAI accepts it.
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": self.name,
                    "schema": copy.deepcopy(self._grammar_schema),
                    "strict": strict_compatible(self._grammar_schema),
                },
            }
        }

    def spec(self) -> dict[str, Any]:
        return {"schema": self._schema, "name": self.name}
