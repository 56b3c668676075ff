"""Score an answer to a BFCL item with BFCL's official AST checker.

Importing ``bfcl_eval.eval_checker.ast_eval.ast_checker`` normally imports
``bfcl_eval.constants.model_config``, which imports every model-provider handler (and their
~33 SDKs). The checker only reads ``MODEL_CONFIG_MAPPING[model].underscore_to_dot`` from it,
and only for function names containing a dot. So, before importing the checker, we register a
tiny stand-in module under that name whose mapping answers ``underscore_to_dot=False`` for any
model. That is consistent with :mod:`modelladder.bench.bfcl.schema`: tools are exposed under
sanitised names (``math_factorial``), and :func:`score` maps them back to the exact BFCL names
(``math.factorial``) before calling the checker, so the checker compares BFCL names as-is.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelladder.bench.bfcl.data import BfclItem
from modelladder.bench.bfcl.schema import bfcl_name, to_json_schema, tool_name

__all__ = ["MODEL_NAME", "ScoreResult", "reference_answer", "reference_pass_rates", "score"]

_MODEL_CONFIG = "bfcl_eval.constants.model_config"
MODEL_NAME = "modelladder"


@dataclass(frozen=True)
class _StandInModelConfig:
    underscore_to_dot: bool = False
    is_fc_model: bool = True


class _StandInMapping(dict):
    """Every lookup answers a config with ``underscore_to_dot=False``."""

    def __missing__(self, key: str) -> _StandInModelConfig:
        return _StandInModelConfig()


def _install_stand_in() -> None:
    loaded = sys.modules.get(_MODEL_CONFIG)
    if loaded is not None:  # the real module (or a stand-in) is already loaded: add our entry
        mapping = getattr(loaded, "MODEL_CONFIG_MAPPING", None)
        if isinstance(mapping, dict) and MODEL_NAME not in mapping:
            mapping[MODEL_NAME] = _StandInModelConfig()
        return
    mod = types.ModuleType(_MODEL_CONFIG, "modelladder stand-in for bfcl_eval's model config")
    mod.MODEL_CONFIG_MAPPING = _StandInMapping()  # type: ignore[attr-defined]
    mod.ModelConfig = _StandInModelConfig  # type: ignore[attr-defined]
    sys.modules[_MODEL_CONFIG] = mod


_install_stand_in()

from bfcl_eval.constants.enums import Language  # noqa: E402
from bfcl_eval.eval_checker.ast_eval.ast_checker import (  # noqa: E402
    ast_checker,
    standardize_string,
)


@dataclass(frozen=True)
class ScoreResult:
    """``valid`` is BFCL's verdict; ``error_type`` its code (e.g. ``value_error:string``) or ours:
    ``no_call`` (no call on an item that needs one), ``irrelevance:called`` (a call on an
    irrelevance item), ``bad_call`` (a call we could not read), ``checker_exception``."""

    valid: bool
    error: str | None = None
    error_type: str | None = None


def _normalise_call(call: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Accept ``{"name", "arguments"}`` or an OpenAI tool call ``{"function": {...}}``;
    ``arguments`` may be a dict or a JSON object string."""
    if "function" in call and isinstance(call["function"], Mapping):
        call = call["function"]
    name = call["name"]
    args = call.get("arguments", {})
    if isinstance(args, str):
        args = json.loads(args) if args.strip() else {}
    if args is None:
        args = {}
    if not isinstance(name, str) or not isinstance(args, dict):
        raise TypeError("a call needs a string name and an object of arguments")
    return name, args


def _format_error(error: Any) -> str | None:
    if not error:
        return None
    if isinstance(error, list):
        return "; ".join(e if isinstance(e, str) else json.dumps(e, default=str) for e in error)
    return str(error)


def score(item: BfclItem, calls: Sequence[Mapping[str, Any]] | None) -> ScoreResult:
    """Score ``calls`` (our call format, tool-form names; ``[]``/``None`` = no call) on ``item``."""
    calls = list(calls or [])
    if item.is_irrelevance:
        if not calls:
            return ScoreResult(valid=True)
        names = ", ".join(str(c.get("name", c.get("function", "?"))) for c in calls)
        return ScoreResult(False, f"made a call on an irrelevance item: {names}", "irrelevance:called")
    if not calls:
        return ScoreResult(False, "no function call made", "no_call")

    try:
        model_output = []
        for call in calls:
            name, args = _normalise_call(call)
            model_output.append({bfcl_name(name, item.functions): args})
    except (KeyError, TypeError, ValueError) as exc:
        return ScoreResult(False, f"unreadable call: {exc}", "bad_call")

    try:
        result = ast_checker(
            item.functions,
            model_output,
            item.ground_truth,
            Language.PYTHON,
            item.category,
            MODEL_NAME,
        )
    except Exception as exc:  # the official checker is not written to be total
        return ScoreResult(False, f"checker raised {exc!r}", "checker_exception")
    if result["valid"]:
        return ScoreResult(valid=True)
    return ScoreResult(False, _format_error(result.get("error")), result.get("error_type"))


# --------------------------------------------------------------------------- reference oracle

_OMIT = object()


def _validates(value: Any, schema: Mapping[str, Any]) -> bool:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema).is_valid(value)


def _unwrap_dict(answer: Mapping[str, Any], prop_docs: Mapping[str, Any] | None) -> dict[str, Any]:
    """A nested dict answer is ``{key: [accepted values...]}``: pick one value per key."""
    out = {}
    for key, accepted in answer.items():
        if not isinstance(accepted, list):
            out[key] = accepted
            continue
        doc = (prop_docs or {}).get(key)
        picked = _pick(accepted, doc, required=False)
        if picked is not _OMIT:
            out[key] = picked
    return out


def _resolve(value: Any, doc: Mapping[str, Any] | None) -> Any:
    """Turn an accepted value into a concrete one (nested dict answers hold accepted lists)."""
    if doc is None:
        return value
    t = doc.get("type")
    if t == "dict" and isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
        return _unwrap_dict(value, doc.get("properties"))
    items = doc.get("items") or {}
    if (
        t in ("array", "tuple")
        and items.get("type") == "dict"
        and isinstance(value, list)
        and all(isinstance(v, dict) for v in value)
    ):
        return [_unwrap_dict(v, items.get("properties")) for v in value]
    return value


def _pick(accepted: list[Any], doc: Mapping[str, Any] | None, required: bool) -> Any:
    """One value out of an argument's accepted values, or ``_OMIT``.

    ``""`` first means "may be omitted": the argument is left out unless it is required. Else
    the first non-empty value, preferring one that fits the converted JSON Schema (so the
    reference is an answer a schema-constrained decoder could produce): when none fits but
    one equals an enum member up to the checker's own string normalisation, that member is
    used; when none fits and omission is allowed, the argument is left out.
    """
    omittable = "" in accepted and not required
    if doc is None:  # an argument the function doc does not declare
        return _OMIT if omittable else (accepted[0] if accepted else _OMIT)
    if not accepted or (accepted[0] == "" and not required):
        return _OMIT
    candidates = [_resolve(v, doc) for v in accepted if v != ""]
    if not candidates:
        return _OMIT
    schema = to_json_schema(doc, closed=True)
    for c in candidates:
        if _validates(c, schema):
            return c
    enum = [e for e in schema.get("enum", ()) if isinstance(e, str)]
    for c in candidates:
        if isinstance(c, str):
            match = [e for e in enum if standardize_string(e) == standardize_string(c)]
            if match:
                return match[0]
    return _OMIT if omittable else candidates[0]


def reference_answer(item: BfclItem) -> list[dict[str, Any]]:
    """The oracle answer from the ground truth, in our call format (tool-form names).

    Per argument (see :func:`_pick`): omitted when its first accepted value is ``""`` (BFCL's
    "may be omitted") unless the doc marks it required, else the first non-empty accepted
    value, preferring one that fits the tool's schema; nested dict answers (``{key: [accepted
    values]}``) are resolved the same way one level down. ``[]`` for irrelevance items.
    """
    if item.ground_truth is None:
        return []
    docs = {f["name"]: f for f in item.functions}
    calls = []
    for gt_call in item.ground_truth:
        ((fn, args),) = gt_call.items()
        params = docs.get(fn, {}).get("parameters") or {}
        props = params.get("properties") or {}
        required = set(params.get("required") or ())
        arguments = {}
        for arg, accepted in args.items():
            picked = _pick(accepted, props.get(arg), arg in required)
            if picked is not _OMIT:
                arguments[arg] = picked
        calls.append({"name": tool_name(fn), "arguments": arguments})
    return calls


def reference_pass_rates(categories: Sequence[str] | None = None) -> dict[str, tuple[int, int]]:
    """``{category: (passed, total)}`` for the reference answer under the official checker."""
    from modelladder.bench.bfcl.data import CATEGORIES, load_items

    rates = {}
    for category in categories or CATEGORIES:
        items = load_items(category)
        passed = sum(score(it, reference_answer(it)).valid for it in items)
        rates[category] = (passed, len(items))
    return rates


if __name__ == "__main__":  # python -m modelladder.bench.bfcl.score [category ...]
    for cat, (ok, n) in reference_pass_rates(sys.argv[1:] or None).items():
        print(f"{cat:24s} {ok:5d}/{n:<5d} {ok / n:.2%}")
