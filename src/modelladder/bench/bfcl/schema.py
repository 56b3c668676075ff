"""BFCL function docs -> JSON Schema (draft 2020-12) and OpenAI-style tools.

BFCL describes parameters in a JSON-Schema-like dialect with Python type names (``dict``,
``float``, ``tuple``, ``any``) and a few non-standard keys (``optional``). This module turns one
into real JSON Schema that a constrained decoder (llguidance) can compile and that
``jsonschema`` accepts. Every choice is listed, with its reason, in ``docs/bfcl_schema.md``.

Tool names: OpenAI-style function names must match ``^[a-zA-Z0-9_-]{1,64}$``, but BFCL names
such as ``math.factorial`` contain dots. BFCL's own handlers replace ``.`` with ``_`` for
function-calling models (``model_handler/utils.py::convert_to_tool``) and its checker, when
the model config says ``underscore_to_dot``, converts the expected names the same way. We do
the same replacement in :func:`tool_name` and map back exactly with :func:`bfcl_name`, so the
scorer can hand the official checker the original BFCL names.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["TYPE_MAP", "bfcl_name", "to_json_schema", "to_openai_tool", "tool_name"]

# BFCL / Gorilla type name -> JSON Schema type. ``None`` means "no type constraint".
# The first eight are the ones the BFCL v4 Python categories use; the rest are the aliases
# BFCL's own ``GORILLA_TO_OPENAPI`` table knows (Java / JavaScript spellings), accepted so the
# converter also works on the other categories.
TYPE_MAP: dict[str, str | None] = {
    "string": "string",
    "integer": "integer",
    "float": "number",
    "boolean": "boolean",
    "array": "array",
    "tuple": "array",
    "dict": "object",
    "any": None,
    # aliases
    "number": "number",
    "object": "object",
    "list": "array",
    "bool": "boolean",
    "byte": "integer",
    "short": "integer",
    "long": "integer",
    "double": "number",
    "char": "string",
    "String": "string",
    "Bigint": "integer",
    "ArrayList": "array",
    "Array": "array",
    "Queue": "array",
    "Stack": "array",
    "HashMap": "object",
    "Hashtable": "object",
    "Any": None,
}

# Standard JSON Schema keywords copied through unchanged (they mean the same thing in BFCL).
_PASSTHROUGH = (
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
)

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}

_TOOL_NAME_BAD = re.compile(r"[^a-zA-Z0-9_-]")


def _matches_type(value: Any, json_type: str) -> bool:
    if json_type in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _PY_TYPES[json_type])


def _convert(node: Mapping[str, Any], *, closed: bool) -> dict[str, Any]:
    """Convert one BFCL parameter node (recursively)."""
    bfcl_type = node.get("type")
    # Missing type: BFCL's OpenAI conversion assumes "string"; an unknown type name gets no
    # constraint (the description still says what is wanted).
    json_type = "string" if bfcl_type is None else TYPE_MAP.get(bfcl_type)

    out: dict[str, Any] = {}
    if json_type is not None:
        out["type"] = json_type
    if isinstance(node.get("description"), str):
        out["description"] = node["description"]

    if json_type == "object":
        props = node.get("properties")
        if isinstance(props, Mapping) and props:
            out["properties"] = {name: _convert(sub, closed=closed) for name, sub in props.items()}
        required = node.get("required")
        if isinstance(required, list) and required:
            out["required"] = list(required)
        if closed and "properties" in out and all(r in out["properties"] for r in out.get("required", ())):
            out["additionalProperties"] = False

    if json_type == "array":
        items = node.get("items")
        out["items"] = _convert(items, closed=closed) if isinstance(items, Mapping) else {}

    enum = node.get("enum")
    if isinstance(enum, list) and enum:
        if json_type == "array":
            # BFCL puts the allowed *element* values on the array itself; as JSON Schema that
            # would demand the whole array equal one string (unsatisfiable). Move it to items.
            if "enum" not in out["items"]:
                out["items"]["enum"] = list(enum)
        elif json_type is None or all(_matches_type(e, json_type) for e in enum):
            out["enum"] = list(enum)
        else:
            # Declared type and enum disagree (e.g. boolean with ["True", "False", "dontcare"]):
            # accept either a value of the declared type or one of the listed values.
            described = {k: out.pop(k) for k in ("description",) if k in out}
            out = {"anyOf": [out, {"enum": list(enum)}], **described}

    for key in _PASSTHROUGH:
        if key in node:
            out[key] = copy.deepcopy(node[key])
    if "default" in node:
        # Annotation only: BFCL defaults are often not of the declared type ("false" for a
        # boolean, null for a string) and JSON Schema does not require them to validate.
        out["default"] = copy.deepcopy(node["default"])
    return out


def to_json_schema(bfcl_params: Mapping[str, Any], *, closed: bool = True) -> dict[str, Any]:
    """Convert a BFCL ``parameters`` block (or any nested parameter node) to JSON Schema.

    ``closed`` adds ``additionalProperties: false`` to every object that declares
    ``properties`` (the official checker rejects unexpected arguments and unexpected dict
    keys, so allowing them only lets a decoder produce answers that are sure to fail).
    Free-form ``dict`` parameters (no ``properties``) stay open either way.
    """
    return _convert(bfcl_params, closed=closed)


def tool_name(bfcl_name: str) -> str:
    """The OpenAI-safe tool name for a BFCL function name (``math.factorial`` -> ``math_factorial``).

    Same rule as BFCL's handlers (``.`` -> ``_``), extended to any other character outside
    ``[a-zA-Z0-9_-]`` (none occur in BFCL v4). BFCL names are at most 64 characters already.
    """
    return _TOOL_NAME_BAD.sub("_", bfcl_name)


def bfcl_name(tool_name_: str, functions: Iterable[Mapping[str, Any]]) -> str:
    """Map a tool name back to the BFCL name of the matching function in ``functions``.

    An exact BFCL name wins over a sanitised match. A name that matches no function (a
    hallucinated tool) is returned unchanged, so a checker reports it as a wrong function.
    """
    names = [f["name"] for f in functions]
    if tool_name_ in names:
        return tool_name_
    for name in names:
        if tool_name(name) == tool_name_:
            return name
    return tool_name_


def to_openai_tool(func_doc: Mapping[str, Any], *, closed: bool = True) -> dict[str, Any]:
    """A BFCL function doc as an OpenAI chat-completions tool ``{"type": "function", ...}``."""
    params = func_doc.get("parameters") or {"type": "dict", "properties": {}}
    schema = to_json_schema(params, closed=closed)
    # The parameters block is always an object, whatever BFCL wrote.
    schema["type"] = "object"
    schema.setdefault("properties", {})
    if closed and not schema["properties"] and not schema.get("required"):
        # A function that declares no parameters takes no arguments. (Nested dicts with empty
        # ``properties`` are free-form, e.g. ``requests.get``'s ``headers``, and stay open.)
        schema["additionalProperties"] = False
    return {
        "type": "function",
        "function": {
            "name": tool_name(func_doc["name"]),
            "description": func_doc.get("description", ""),
            "parameters": schema,
        },
    }
