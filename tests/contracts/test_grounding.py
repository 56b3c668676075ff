"""Grounded strings: a rung's decoding narrowed to spans of the user text (contracts/grounding.py)."""

from __future__ import annotations

import json
import re

import pytest
from llguidance import LLMatcher
from pydantic import BaseModel, Field

from modelladder import Choice, GenerationParams, JsonSchema, ToolCalls
from modelladder.backends import open_backend
from modelladder.contracts.grounding import ground_schema, span_pattern
from modelladder.fleet import FleetError, parse_fleet
from tests.support.contracts import TOK, WEATHER
from tests.support.models import SMOL

QUESTION = "What's the weather in Seattle, WA next Friday? Answer in Celsius."


def decodes_with(grammar: str, text: str) -> bool:
    m = LLMatcher(TOK, grammar, log_level=0)
    assert not m.is_error(), m.get_error()
    return m.consume_tokens(TOK.tokenize_str(text)) and m.is_accepting() and m.consume_token(TOK.eos_token)


def weather_call(**arguments: object) -> str:
    return "<tool_call>" + json.dumps([{"name": "get_weather", "arguments": arguments}]) + "</tool_call>"


class TestSpanPattern:
    def test_spans_of_whole_words_any_case(self) -> None:
        r = re.compile(span_pattern(QUESTION))
        for ok in ("Seattle, WA", "seattle", "next Friday", "in Celsius", "What's the weather"):
            assert r.match(ok), ok
        for bad in ("Portland", "Seattle WA", "eattle", "Friday?", "Celsius.", ""):
            assert not r.match(bad), bad

    def test_span_length_is_capped(self) -> None:
        text = " ".join(f"w{i}" for i in range(30))
        r = re.compile(span_pattern(text, max_words=5))
        assert r.match("w3 w4 w5 w6 w7") and not r.match("w3 w4 w5 w6 w7 w8")

    def test_meta_characters_are_literal(self) -> None:
        r = re.compile(span_pattern("price (USD) is $5.00 [net] a+b"))
        assert r.match("(USD) is $5.00") is None  # "(" is not part of a word: spans start at words
        assert r.match("USD) is $5.00")  # the text between words is kept as written
        assert r.match("USD is 5.00") is None
        assert r.match("5.00") and r.match("a+b") and not r.match("aab")

    def test_no_words_no_pattern(self) -> None:
        assert span_pattern("?! ...") is None

    def test_only_free_strings_are_narrowed(self) -> None:
        schema = {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]},
                "date": {"type": "string", "format": "date"},
                "days": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "where": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
        }
        out = ground_schema(schema, "^x$")
        props = out["properties"]
        assert props["city"]["pattern"] == "^x$" and props["tags"]["items"]["pattern"] == "^x$"
        assert props["where"]["anyOf"][0]["pattern"] == "^x$"
        assert (
            "pattern" not in props["unit"]
            and "pattern" not in props["date"]
            and "pattern" not in props["days"]
        )
        assert "pattern" not in schema["properties"]["city"]  # a copy: the declaration is untouched


class TestGroundedGrammar:
    def test_decoding_allows_only_spans(self) -> None:
        c = ToolCalls([WEATHER])
        g = c.grounded_grammar(QUESTION)
        assert decodes_with(g, weather_call(city="Seattle, WA"))
        assert decodes_with(g, weather_call(city="seattle", days=3))  # integers are not narrowed
        assert not decodes_with(g, weather_call(city="Portland"))
        assert decodes_with(c.grammar(), weather_call(city="Portland"))  # the contract itself is unchanged
        assert c.validate(weather_call(city="Portland")).ok

    def test_no_words_or_huge_text_fall_back_to_the_plain_grammar(self) -> None:
        c = ToolCalls([WEATHER])
        assert c.grounded_grammar("???") == c.grammar()
        huge = " ".join(f"word{i}" for i in range(5000))
        assert c.grounded_grammar(huge) == c.grammar()


class TestJsonSchema:
    def test_string_fields_are_narrowed_numbers_and_enums_are_not(self) -> None:
        schema = {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "tier": {"type": "string", "enum": ["gold", "free"]},
            },
            "required": ["name", "age", "tier"],
        }
        c = JsonSchema(schema)
        g = c.grounded_grammar("Maria Lopez is 41 and wants a refund.")
        assert decodes_with(g, '{"name": "Maria Lopez", "age": 7, "tier": "gold"}')
        assert not decodes_with(g, '{"name": "Mary Lopez", "age": 7, "tier": "gold"}')
        assert decodes_with(c.grammar(), '{"name": "Mary Lopez", "age": 7, "tier": "gold"}')

    def test_pydantic_defs_are_narrowed(self) -> None:
        class Who(BaseModel):
            name: str

        class Order(BaseModel):
            who: Who
            note: str = Field(pattern="^[A-Z]+$")

        g = JsonSchema(Order).grounded_grammar("Ship it to Ada Byron please")
        assert decodes_with(
            g, '{"who": {"name": "Ada Byron"}, "note": "X"}'
        )  # the pattern field is left alone
        assert not decodes_with(g, '{"who": {"name": "Grace"}, "note": "X"}')

    def test_kinds_without_free_strings_are_unchanged(self) -> None:
        c = Choice(["billing", "shipping"])
        assert c.grounded_grammar("anything at all") == c.grammar()


class TestFleetOption:
    def test_only_local_rungs(self) -> None:
        remote = {"name": "r", "backend": "openai", "url": "http://x/v1", "params": 1, "ground_strings": True}
        with pytest.raises(FleetError, match="ground_strings"):
            parse_fleet({"rung": [remote]})
        with pytest.raises(FleetError, match="true or false"):
            parse_fleet({"rung": [{**SMOL, "ground_strings": "yes"}]})
        assert parse_fleet({"rung": [{**SMOL, "ground_strings": True}]}).rungs[0].ground_strings


@pytest.mark.model
def test_grounded_rung_copies_the_city_from_the_question() -> None:
    backend = open_backend(parse_fleet({"rung": [{**SMOL, "ground_strings": True}]}).rungs[0])
    msgs = [{"role": "user", "content": "Is it raining in Lyon today?"}]
    contract = ToolCalls([WEATHER])
    g = backend.generate(msgs, contract, GenerationParams(max_tokens=64))
    v = contract.validate(g.text, msgs)
    assert v.ok, g.text
    city = v.value[0]["arguments"]["city"]
    assert re.fullmatch(span_pattern(msgs[0]["content"]), city), city
