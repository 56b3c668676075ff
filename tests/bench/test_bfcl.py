"""BFCL v4 loader, schema conversion and scorer (no model needed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

pytest.importorskip("bfcl_eval")

from jsonschema import Draft202012Validator  # noqa: E402

from modelladder.bench.bfcl.data import (  # noqa: E402
    AST_CATEGORIES,
    CATEGORIES,
    CATEGORY_COUNTS,
    IRRELEVANCE_CATEGORIES,
    load_items,
    split_half,
)
from modelladder.bench.bfcl.schema import (  # noqa: E402
    bfcl_name,
    to_json_schema,
    to_openai_tool,
    tool_name,
)
from modelladder.bench.bfcl.score import ScoreResult, reference_answer, score  # noqa: E402

TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@pytest.fixture(scope="module")
def all_items():
    return {c: load_items(c) for c in CATEGORIES}


def _valid_schema(schema):
    Draft202012Validator.check_schema(schema)
    return schema


# ----------------------------------------------------------------------------- schema


def test_schema_basic_types():
    s = _valid_schema(
        to_json_schema(
            {
                "type": "dict",
                "required": ["a"],
                "properties": {
                    "a": {"type": "float", "description": "A float."},
                    "b": {"type": "integer", "default": 3},
                    "c": {"type": "tuple", "items": {"type": "integer"}},
                    "d": {"type": "any", "description": "Anything."},
                    "e": {"type": "boolean", "optional": True},
                    "f": {"type": "string", "enum": ["x", "y"], "default": "x"},
                },
            }
        )
    )
    assert s["type"] == "object"
    assert s["required"] == ["a"]
    assert s["additionalProperties"] is False
    p = s["properties"]
    assert p["a"] == {"type": "number", "description": "A float."}
    assert p["b"] == {"type": "integer", "default": 3}
    assert p["c"] == {"type": "array", "items": {"type": "integer"}}
    assert p["d"] == {"description": "Anything."}  # no type constraint
    assert p["e"] == {"type": "boolean"}  # non-standard "optional" dropped
    assert p["f"] == {"type": "string", "enum": ["x", "y"], "default": "x"}
    v = Draft202012Validator(s)
    assert v.is_valid({"a": 1, "c": [1, 2], "d": {"any": "thing"}, "f": "y"})
    assert not v.is_valid({"a": "1"})
    assert not v.is_valid({"b": 1})  # a missing
    assert not v.is_valid({"a": 1.5, "zzz": 1})  # closed


def test_schema_nested_and_array_items():
    s = _valid_schema(
        to_json_schema(
            {
                "type": "dict",
                "properties": {
                    "loc": {
                        "type": "dict",
                        "required": ["lat"],
                        "properties": {
                            "lat": {"type": "float"},
                            "tags": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "rows": {
                        "type": "array",
                        "items": {
                            "type": "dict",
                            "properties": {"k": {"type": "string"}, "v": {"type": "any"}},
                        },
                    },
                    "grid": {"type": "array", "items": {"type": "array", "items": {"type": "float"}}},
                    "free": {"type": "dict", "properties": {}},
                    "free2": {"type": "dict", "required": ["x"]},
                },
            }
        )
    )
    p = s["properties"]
    assert p["loc"]["type"] == "object"
    assert p["loc"]["properties"]["lat"] == {"type": "number"}
    assert p["loc"]["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    assert p["loc"]["additionalProperties"] is False
    assert p["rows"]["items"]["properties"]["v"] == {}
    assert p["grid"] == {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
    assert p["free"] == {"type": "object"}  # free-form dicts stay open
    assert p["free2"] == {"type": "object", "required": ["x"]}
    v = Draft202012Validator(s)
    assert v.is_valid({"loc": {"lat": 1.0, "tags": ["a"]}, "rows": [{"k": "a", "v": 3}], "grid": [[1, 2.5]]})
    assert not v.is_valid({"loc": {"tags": []}})
    assert v.is_valid({"free": {"anything": [1]}, "free2": {"x": 1, "y": 2}})


def test_schema_enum_fixes():
    s = _valid_schema(
        to_json_schema(
            {
                "type": "dict",
                "properties": {
                    # BFCL puts element enums on the array itself
                    "metrics": {"type": "array", "items": {"type": "string"}, "enum": ["co2", "noise"]},
                    # type and enum disagree (SGD-style "dontcare")
                    "free_entry": {
                        "type": "boolean",
                        "description": "d",
                        "enum": ["True", "False", "dontcare"],
                        "default": "dontcare",
                    },
                    "rooms": {"type": "integer", "enum": [1, 2, 3]},
                },
            }
        )
    )
    p = s["properties"]
    assert p["metrics"] == {"type": "array", "items": {"type": "string", "enum": ["co2", "noise"]}}
    assert p["free_entry"] == {
        "anyOf": [{"type": "boolean"}, {"enum": ["True", "False", "dontcare"]}],
        "description": "d",
        "default": "dontcare",
    }
    assert p["rooms"] == {"type": "integer", "enum": [1, 2, 3]}
    v = Draft202012Validator(s)
    assert v.is_valid({"metrics": ["co2", "noise"], "free_entry": True})
    assert v.is_valid({"free_entry": "dontcare"})
    assert not v.is_valid({"metrics": ["pm25"]})
    assert not v.is_valid({"free_entry": "maybe"})


def test_schema_unknown_type_and_aliases():
    s = _valid_schema(
        to_json_schema(
            {
                "type": "dict",
                "properties": {
                    "weird": {"type": "Frobnicator", "description": "?"},
                    "notype": {"description": "no type"},
                    "long": {"type": "long"},
                    "hm": {"type": "HashMap"},
                    "lim": {"type": "integer", "maximum": 400},
                },
            }
        )
    )
    p = s["properties"]
    assert p["weird"] == {"description": "?"}
    assert p["notype"] == {"type": "string", "description": "no type"}
    assert p["long"] == {"type": "integer"}
    assert p["hm"] == {"type": "object"}
    assert p["lim"] == {"type": "integer", "maximum": 400}


def test_openai_tool_shape():
    doc = {
        "name": "math.factorial",
        "description": "Factorial.",
        "parameters": {"type": "dict", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    }
    tool = to_openai_tool(doc)
    assert tool["type"] == "function"
    fn = tool["function"]
    assert fn["name"] == "math_factorial"
    assert fn["description"] == "Factorial."
    assert fn["parameters"]["type"] == "object"
    _valid_schema(fn["parameters"])
    noargs = to_openai_tool(
        {"name": "ping", "description": "", "parameters": {"type": "dict", "properties": {}}}
    )
    assert noargs["function"]["parameters"] == {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }
    assert doc["parameters"]["type"] == "dict"  # input not mutated


def test_every_tool_schema_is_valid(all_items):
    # one metaschema validator for all (check_schema() builds a new one per call: slow)
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    seen = set()
    for items in all_items.values():
        for it in items:
            for tool in it.tools:
                assert TOOL_NAME_RE.match(tool["function"]["name"])
                key = json.dumps(tool["function"]["parameters"], sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    errors = list(meta.iter_errors(tool["function"]["parameters"]))
                    assert not errors, (it.id, errors[0].message)
    assert len(seen) > 2000


def test_every_tool_schema_compiles_with_llguidance(all_items):
    llg = pytest.importorskip("llguidance")
    seen = set()
    for items in all_items.values():
        for it in items:
            for tool in it.tools:
                key = json.dumps(tool["function"]["parameters"], sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                grammar = llg.LLMatcher.grammar_from_json_schema(key)
                is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(grammar)
                assert not is_error, (it.id, messages)


def test_name_mapping_round_trip(all_items):
    n_dotted = 0
    for items in all_items.values():
        for it in items:
            for f in it.functions:
                t = tool_name(f["name"])
                assert TOOL_NAME_RE.match(t)
                assert bfcl_name(t, it.functions) == f["name"]
                n_dotted += "." in f["name"]
    assert n_dotted > 1000
    fns = [{"name": "math.factorial"}, {"name": "math_gcd"}]
    assert tool_name("math.factorial") == "math_factorial"
    assert bfcl_name("math_factorial", fns) == "math.factorial"
    assert bfcl_name("math_gcd", fns) == "math_gcd"
    assert bfcl_name("math.factorial", fns) == "math.factorial"
    assert bfcl_name("nope", fns) == "nope"  # unknown names pass through


# ----------------------------------------------------------------------------- data


def test_category_counts(all_items):
    assert set(CATEGORIES) == set(CATEGORY_COUNTS)
    for c, items in all_items.items():
        assert len(items) == CATEGORY_COUNTS[c], c
        assert len({it.id for it in items}) == len(items)


def test_item_fields(all_items):
    for c, items in all_items.items():
        for it in items:
            assert it.category == c
            assert it.messages and all(set(m) == {"role", "content"} for m in it.messages)
            assert it.messages[-1]["role"] == "user"
            assert len(it.tools) == len(it.functions)
            # 4 live_irrelevance items come with no function at all
            assert it.functions or c == "live_irrelevance"
            assert it.is_irrelevance == (c in IRRELEVANCE_CATEGORIES)
            assert it.parallel == c.endswith(("parallel", "parallel_multiple"))
            if it.is_irrelevance:
                assert it.ground_truth is None and it.expected_calls == 0
            else:
                assert it.expected_calls == len(it.ground_truth) >= 1
                if not it.parallel:
                    assert it.expected_calls == 1
    # system messages are kept (11 live_simple items start with one)
    assert sum(it.messages[0]["role"] == "system" for it in all_items["live_simple"]) == 11
    assert any(len(it.messages) > 2 for it in all_items["live_irrelevance"])
    assert sum(not it.functions for it in all_items["live_irrelevance"]) == 4


def test_load_limit_and_unknown_category():
    assert [it.id for it in load_items("multiple", limit=3)] == ["multiple_0", "multiple_1", "multiple_2"]
    with pytest.raises(ValueError, match="simple_python.*live_irrelevance"):
        load_items("simple_java")


def test_split_half_stable_and_balanced(all_items):
    ids = [it.id for items in all_items.values() for it in items]
    halves = [split_half(i) for i in ids]
    assert halves == [split_half(i) for i in ids]
    assert set(halves) == {"calibrate", "report"}
    frac = halves.count("calibrate") / len(halves)
    assert 0.45 < frac < 0.55
    for c, items in all_items.items():
        if len(items) >= 200:
            f = sum(split_half(it.id) == "calibrate" for it in items) / len(items)
            assert 0.4 < f < 0.6, c
    # pinned so that a change of hash or rule is noticed (it would mix the two halves)
    assert [split_half(f"simple_python_{i}") for i in range(6)] == [
        "calibrate",
        "calibrate",
        "report",
        "calibrate",
        "report",
        "report",
    ]


# ----------------------------------------------------------------------------- scoring


@pytest.mark.parametrize("category", AST_CATEGORIES)
def test_reference_passes_sample(category):
    it = load_items(category, limit=1)[0]
    ref = reference_answer(it)
    assert len(ref) == it.expected_calls
    assert all(TOOL_NAME_RE.match(c["name"]) for c in ref)
    assert score(it, ref) == ScoreResult(valid=True)


def test_reference_pass_rate_at_least_95_percent():
    for category in ("simple_python", "multiple", "live_simple"):
        items = load_items(category)
        passed = sum(score(it, reference_answer(it)).valid for it in items)
        assert passed / len(items) >= 0.95, (category, passed, len(items))


def test_wrong_value_fails():
    it = load_items("simple_python", limit=1)[0]  # calculate_triangle_area(base=10, height=5)
    ref = reference_answer(it)
    bad = [{"name": ref[0]["name"], "arguments": {**ref[0]["arguments"], "base": 11}}]
    r = score(it, bad)
    assert not r.valid and r.error_type == "value_error:others" and "base" in r.error


def test_wrong_name_and_count_fail():
    it = load_items("simple_python", limit=1)[0]
    ref = reference_answer(it)
    r = score(it, [{"name": "other_fn", "arguments": ref[0]["arguments"]}])
    assert not r.valid and r.error_type == "simple_function_checker:wrong_func_name"
    r = score(it, ref + ref)
    assert not r.valid and r.error_type == "simple_function_checker:wrong_count"


def test_missing_call_fails():
    it = load_items("multiple", limit=1)[0]
    for calls in ([], None):
        r = score(it, calls)
        assert not r.valid and r.error_type == "no_call"


def test_irrelevance_decline_passes_and_call_fails():
    for category in IRRELEVANCE_CATEGORIES:
        it = load_items(category, limit=1)[0]
        assert score(it, []).valid and score(it, None).valid
        r = score(it, [{"name": it.tools[0]["function"]["name"], "arguments": {}}])
        assert not r.valid and r.error_type == "irrelevance:called"
        assert reference_answer(it) == []


def test_dotted_names_scored_via_tool_names():
    it = next(i for i in load_items("simple_python") if "." in i.functions[0]["name"])
    ref = reference_answer(it)
    assert "." not in ref[0]["name"]
    assert score(it, ref).valid


def test_parallel_order_free_and_openai_call_shape():
    it = next(i for i in load_items("parallel") if len(i.ground_truth) >= 2)
    ref = reference_answer(it)
    assert score(it, list(reversed(ref))).valid
    openai_style = [
        {"type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
        for c in ref
    ]
    assert score(it, openai_style).valid
    assert not score(it, ref[:1]).valid


def test_bad_call_is_invalid_not_an_exception():
    it = load_items("simple_python", limit=1)[0]
    r = score(it, [{"name": "calculate_triangle_area", "arguments": "{not json"}])
    assert not r.valid and r.error_type == "bad_call"


def test_checker_import_needs_no_model_handlers():
    code = (
        "import sys, modelladder.bench.bfcl.score as s\n"
        "bad = [m for m in sys.modules if m.startswith('bfcl_eval.model_handler')]\n"
        "assert not bad, bad\n"
        "assert sys.modules['bfcl_eval.constants.model_config'].MODEL_CONFIG_MAPPING['any/model'].underscore_to_dot is False\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
