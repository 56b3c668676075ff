"""Contract kinds: validation, declaration errors, digests, and real constrained decoding.

No model is needed: a byte-level vocabulary (256 single bytes + EOS) turns any text into
a token sequence, so llguidance's matcher is exercised exactly as in decoding.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llguidance import LLMatcher
from pydantic import BaseModel, Field

from modelladder.contracts import (
    Check,
    Choice,
    Contract,
    ContractError,
    JsonSchema,
    Regex,
    ToolCalls,
    Verdict,
    check,
    contract_from,
    grounded_arguments,
)
from modelladder.contracts.tools import render_tools
from tests.support.contracts import TOK, WEATHER, decodes

# ---------------------------------------------------------------- byte-level decoding


def allowed_next(contract: Contract, prefix: str) -> set[str]:
    """The single-byte characters the mask allows after ``prefix``."""
    m = LLMatcher(TOK, contract.grammar(), log_level=0)
    assert m.consume_tokens(TOK.tokenize_str(prefix)), m.get_error()
    mask = m.compute_bitmask()
    return {chr(i) for i in range(128) if mask[i // 8] >> (i % 8) & 1}


def grammar_ok(contract: Contract) -> None:
    assert LLMatcher.validate_grammar(contract.grammar()) == ""
    assert LLMatcher.validate_grammar(contract.grammar(), TOK) == ""


# ---------------------------------------------------------------- fixtures

TIME = {
    "name": "get_time",
    "description": "Local time.",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
}

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 150}},
    "required": ["name", "age"],
}


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=150)


def call(name: str, **arguments: object) -> str:
    return "<tool_call>" + json.dumps([{"name": name, "arguments": arguments}]) + "</tool_call>"


# ---------------------------------------------------------------- JsonSchema


class TestJsonSchema:
    def test_valid_dict_schema(self) -> None:
        c = JsonSchema(PERSON)
        v = c.validate('{"name": "Ada", "age": 36}')
        assert v.ok and v.value == {"name": "Ada", "age": 36}
        assert c.validate('\n{\n  "name": "Ada",\n  "age": 36\n}\n').ok
        assert c.validate('```json\n{"name": "Ada", "age": 36}\n```').ok

    def test_pydantic_value_is_instance(self) -> None:
        v = JsonSchema(Person).validate('{"name": "Ada", "age": 36}')
        assert v.ok and v.value == Person(name="Ada", age=36)

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("", "empty_output"),
            ("   ", "empty_output"),
            ('{"name": "Ada", "age": ', "parse_error"),
            ("Sure! Here it is: {}", "parse_error"),
            ('{"name": "Ada", "age": NaN}', "parse_error"),
            ('{"name": "Ada"}', "schema_violation"),
            ('{"name": "Ada", "age": 151}', "schema_violation"),
            ('{"name": 5, "age": 3}', "schema_violation"),
            ("[1, 2]", "schema_violation"),
        ],
    )
    @pytest.mark.parametrize("schema", [PERSON, Person])
    def test_invalid(self, schema: object, text: str, reason: str) -> None:
        v = JsonSchema(schema).validate(text)  # type: ignore[arg-type]
        assert not v.ok and v.reason == reason, v
        assert v.detail

    def test_detail_names_the_path(self) -> None:
        v = JsonSchema(PERSON).validate('{"name": "Ada", "age": 151}')
        assert v.detail.startswith("$.age:") and "150" in v.detail

    def test_validation_keeps_open_objects_but_grammar_closes_them(self) -> None:
        c = JsonSchema(PERSON)
        assert c.validate('{"name": "Ada", "age": 36, "extra": 1}').ok
        assert '"additionalProperties":false' in c.grammar().replace(" ", "")
        assert "additionalProperties" not in c.json_schema  # the declaration is untouched
        assert not decodes(c, '{"name": "Ada", "age": 36, "extra": 1}')

    def test_explicit_additional_properties_is_respected(self) -> None:
        schema = {**PERSON, "additionalProperties": {"type": "integer"}}
        c = JsonSchema(schema)
        assert decodes(c, '{"name": "Ada", "age": 36, "extra": 1}')
        assert not decodes(c, '{"name": "Ada", "age": 36, "extra": "x"}')

    def test_all_of_members_stay_open(self) -> None:
        schema = {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "integer"}}},
                {"type": "object", "properties": {"b": {"type": "integer"}}},
            ]
        }
        c = JsonSchema(schema)
        assert c.validate('{"a": 1, "b": 2}').ok
        assert "additionalProperties" not in json.dumps(c.openai_request())

    def test_decoding(self) -> None:
        for c in (JsonSchema(PERSON), JsonSchema(Person)):
            grammar_ok(c)
            assert decodes(c, '{"name": "Ada", "age": 36}')
            assert decodes(c, '{\n  "name": "Ada",\n  "age": 36\n}')  # flexible whitespace
            assert not decodes(c, '{"name": "Ada", "age": 151}')  # maximum
            assert not decodes(c, '{"name": "Ada", "age": "36"}')  # type
            assert not decodes(c, '{"name": "Ada"}')  # required

    def test_nested_refs_decode(self) -> None:
        class Address(BaseModel):
            city: str

        class Customer(BaseModel):
            name: str
            address: Address

        c = JsonSchema(Customer)
        grammar_ok(c)
        text = '{"name": "Ada", "address": {"city": "London"}}'
        assert decodes(c, text) and c.validate(text).value.address.city == "London"
        assert not decodes(c, '{"name": "Ada", "address": {"city": "London", "zip": "1"}}')

    def test_openai(self) -> None:
        req = JsonSchema(Person).openai_request()["response_format"]
        assert req["type"] == "json_schema"
        assert req["json_schema"]["name"] == "Person" and req["json_schema"]["strict"] is True
        assert req["json_schema"]["schema"]["additionalProperties"] is False
        # an optional property is not allowed under OpenAI strict mode: strict is turned off
        loose = JsonSchema({"type": "object", "properties": {"a": {"type": "string"}}})
        assert loose.openai_request()["response_format"]["json_schema"]["strict"] is False
        msg = {"role": "assistant", "content": '{"name": "Ada", "age": 36}'}
        assert JsonSchema(Person).validate(JsonSchema(Person).from_openai_message(msg)).ok
        assert JsonSchema(Person).from_openai_message({"content": None}) == ""

    def test_instructions_carry_the_schema(self) -> None:
        assert '"maximum": 150' in JsonSchema(PERSON).instructions()

    @pytest.mark.parametrize(
        "bad",
        [
            {"type": "strin"},
            {"type": "object", "properties": {"a": {"type": 5}}},
            {"type": "object", "required": "a"},
            "not a schema",
            42,
        ],
    )
    def test_bad_schema(self, bad: object) -> None:
        with pytest.raises(ContractError, match="JsonSchema"):
            JsonSchema(bad)  # type: ignore[arg-type]

    def test_schema_llguidance_cannot_compile(self) -> None:
        with pytest.raises(ContractError, match="llguidance"):
            JsonSchema({"type": "string", "pattern": "(?=a)a"})

    def test_bad_name(self) -> None:
        with pytest.raises(ContractError, match="name"):
            JsonSchema(PERSON, name="has space")

    def test_declaration_is_copied(self) -> None:
        schema = json.loads(json.dumps(PERSON))
        c = JsonSchema(schema)
        d = c.digest()
        schema["properties"]["age"]["maximum"] = 5
        assert c.digest() == d and c.validate('{"name": "A", "age": 100}').ok

    @settings(max_examples=300, deadline=None)
    @given(st.text())
    def test_parse_never_raises(self, text: str) -> None:
        for c in (_PERSON_C, _PERSON_M):
            v = c.validate(text)
            assert isinstance(v, Verdict)

    @settings(max_examples=100, deadline=None)
    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
            lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids),
            max_leaves=20,
        )
    )
    def test_parse_never_raises_on_json(self, value: object) -> None:
        v = _PERSON_M.validate(json.dumps(value))
        assert isinstance(v, Verdict)

    def test_deep_nesting(self) -> None:
        assert _PERSON_C.validate("[" * 100_000).reason == "parse_error"


_PERSON_C = JsonSchema(PERSON)
_PERSON_M = JsonSchema(Person)


# ---------------------------------------------------------------- ToolCalls


class TestToolCalls:
    def test_valid_single_call(self) -> None:
        c = ToolCalls([WEATHER, TIME])
        v = c.validate(call("get_weather", city="Paris", days=3))
        assert v.ok and v.value == [{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}]
        assert c.validate(
            '  <tool_call>[\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n]</tool_call>\n'
        ).ok

    def test_parallel(self) -> None:
        text = (
            '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
            '{"name": "get_time", "arguments": {"tz": "CET"}}]</tool_call>'
        )
        assert ToolCalls([WEATHER, TIME], parallel=True).validate(text).ok
        v = ToolCalls([WEATHER, TIME]).validate(text)
        assert v.reason == "too_many_calls"
        # several blocks (as some remote models write them) are one list of calls
        blocks = (
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n'
            '<tool_call>{"name": "get_time", "arguments": {"tz": "CET"}}</tool_call>'
        )
        assert len(ToolCalls([WEATHER, TIME], parallel=True).validate(blocks).value) == 2

    @pytest.mark.parametrize(
        ("text", "reason", "in_detail"),
        [
            (
                '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"</tool_call>',
                "parse_error",
                "JSON",
            ),
            ('<tool_call>[{"name": "get_weather", "arguments": {}}]', "parse_error", "</tool_call>"),
            ("Calling now: <tool_call>[]</tool_call>", "parse_error", "outside"),
            ('<tool_call>"get_weather"</tool_call>', "parse_error", "list"),
            ('<tool_call>[{"arguments": {}}]</tool_call>', "parse_error", "name"),
            (call("get_news", topic="x"), "unknown_tool", "get_news"),
            (call("get_weather", city="Paris", days=9), "schema_violation", "get_weather: arguments.days"),
            (call("get_weather", city=5), "schema_violation", "arguments.city"),
            (call("get_weather", days=2), "schema_violation", "'city' is a required property"),
            (
                '<tool_call>[{"name": "get_weather", "arguments": "Paris"}]</tool_call>',
                "schema_violation",
                "object",
            ),
            (
                '<tool_call>[{"name": "get_weather", "arguments": {"city": "P"}, "id": 1}]</tool_call>',
                "schema_violation",
                "unexpected",
            ),
            ("<tool_call>[]</tool_call>", "no_call_not_allowed", ""),
            ("I cannot help with that.", "no_call_not_allowed", ""),
        ],
    )
    def test_invalid(self, text: str, reason: str, in_detail: str) -> None:
        v = ToolCalls([WEATHER, TIME]).validate(text)
        assert not v.ok and v.reason == reason, v
        assert in_detail in v.detail

    @settings(max_examples=300, deadline=None)
    @given(
        st.text(), st.sampled_from(["", "<tool_call>", "</tool_call>", '[{"name": "get_time", "arguments": '])
    )
    def test_parse_never_raises(self, text: str, piece: str) -> None:
        for c in (_TOOLS, _TOOLS_DECLINE):
            assert isinstance(c.validate(piece + text), Verdict)
            assert isinstance(c.validate("<tool_call>" + piece + text + "</tool_call>"), Verdict)

    def test_decline(self) -> None:
        c = ToolCalls([WEATHER], allow_no_call=True)
        assert c.validate("<tool_call>[]</tool_call>") == Verdict.passed([])
        assert c.validate("None of the functions can answer this.") == Verdict.passed([])
        assert decodes(c, "<tool_call>[]</tool_call>")
        assert not decodes(ToolCalls([WEATHER]), "<tool_call>[]</tool_call>")

    def test_tool_choice(self) -> None:
        required = ToolCalls([WEATHER], allow_no_call=True, tool_choice="required")
        assert required.allow_no_call is False
        assert required.validate("<tool_call>[]</tool_call>").reason == "no_call_not_allowed"
        for choice in ("get_time", {"type": "function", "function": {"name": "get_time"}}):
            only = ToolCalls([WEATHER, TIME], tool_choice=choice)
            assert only.tool_choice == "get_time"
            assert only.validate(call("get_time", tz="UTC")).ok
            assert only.validate(call("get_weather", city="Paris")).reason == "unknown_tool"
            assert not decodes(only, call("get_weather", city="Paris"))
            assert "get_weather" not in only.instructions()
            assert only.openai_request()["tool_choice"] == {
                "type": "function",
                "function": {"name": "get_time"},
            }

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"tools": []}, "non-empty list"),
            ({"tools": [{"description": "no name", "parameters": {"type": "object"}}]}, "has no name"),
            ({"tools": [{"type": "function", "function": {"parameters": {}}}]}, "has no name"),
            ({"tools": [WEATHER, WEATHER]}, "unique"),
            (
                {
                    "tools": [
                        {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "nope"}}}}
                    ]
                },
                "not a valid JSON Schema",
            ),
            ({"tools": [{"name": "f", "parameters": {"type": "string"}}]}, "must describe an object"),
            ({"tools": [WEATHER], "tool_choice": "none"}, "free-text step"),
            ({"tools": [WEATHER], "tool_choice": "get_news"}, "not among the tools"),
            ({"tools": [WEATHER], "tool_choice": {"type": "function"}}, "malformed"),
            ({"tools": [{"type": "retrieval"}]}, "has no name"),
        ],
    )
    def test_bad_declarations(self, kwargs: dict, match: str) -> None:
        with pytest.raises(ContractError, match=match):
            ToolCalls(**kwargs)

    def test_bare_and_openai_forms_are_the_same_contract(self) -> None:
        bare = ToolCalls([WEATHER["function"]])
        wrapped = ToolCalls([WEATHER])
        assert bare.digest() == wrapped.digest() and bare.instructions() == wrapped.instructions()
        assert bare.grammar() == wrapped.grammar()

    def test_decoding(self) -> None:
        c = ToolCalls([WEATHER, TIME])
        grammar_ok(c)
        assert decodes(c, call("get_weather", city="Paris", days=3))
        assert decodes(c, '<tool_call>[\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n]</tool_call>')
        assert not decodes(c, call("get_news", topic="x"))  # unknown tool
        assert not decodes(c, call("get_weather", city="Paris", days=8))  # maximum
        assert not decodes(c, call("get_weather", city="Paris", country="FR"))  # extra key
        assert not decodes(c, call("get_weather", days=2))  # required argument missing
        two = (
            '<tool_call>[{"name": "get_time", "arguments": {"tz": "UTC"}}, '
            '{"name": "get_time", "arguments": {"tz": "CET"}}]</tool_call>'
        )
        assert not decodes(c, two)
        assert decodes(ToolCalls([WEATHER, TIME], parallel=True), two)
        assert not decodes(c, "Sure! " + call("get_time", tz="UTC"))

    def test_mask_only_offers_declared_names(self) -> None:
        c = ToolCalls([WEATHER, TIME])
        assert allowed_next(c, '<tool_call>[{"name": "get_') == {"w", "t"}
        assert allowed_next(c, "") == {"<"}

    def test_refs_in_parameters_decode(self) -> None:
        class Address(BaseModel):
            city: str

        class Ship(BaseModel):
            to: Address

        c = ToolCalls([{"name": "ship", "parameters": Ship.model_json_schema()}])
        grammar_ok(c)
        ok = call("ship", to={"city": "Oslo"})
        assert decodes(c, ok) and c.validate(ok).ok
        assert not decodes(c, call("ship", to={"city": 5}))
        assert c.validate(call("ship", to={"city": 5})).reason == "schema_violation"

    def test_instructions(self) -> None:
        text = ToolCalls([WEATHER, TIME]).instructions()
        assert text.startswith("You are an expert in composing functions.")
        assert f"<tools>{render_tools([WEATHER, TIME])}</tools>" in text
        assert "exactly one function/tool call" in text and "more tool calls" not in text
        assert "empty list" not in text
        par = ToolCalls([WEATHER, TIME], parallel=True, allow_no_call=True).instructions()
        assert "one or more function/tool calls" in par and "(more tool calls as required)" in par
        assert "If no function call is needed, please make the tool calls an empty list '[]'." in par
        assert "point it out and refuse to answer" in par

    def test_render_tools_is_stable(self) -> None:
        a = render_tools([WEATHER, TIME])
        assert a == render_tools([json.loads(json.dumps(WEATHER)), dict(TIME)])
        assert "\n" not in a
        assert json.loads(a)[0] == {
            "name": "get_weather",
            **{k: WEATHER["function"][k] for k in ("description", "parameters")},
        }
        assert list(json.loads(a)[0]) == ["name", "description", "parameters"]

    def test_openai(self) -> None:
        c = ToolCalls([WEATHER, TIME])
        req = c.openai_request()
        assert [t["function"]["name"] for t in req["tools"]] == ["get_weather", "get_time"]
        assert all(t["type"] == "function" for t in req["tools"])
        assert req["tool_choice"] == "required" and req["parallel_tool_calls"] is False
        assert (
            ToolCalls([WEATHER], allow_no_call=True, parallel=True).openai_request()["tool_choice"] == "auto"
        )

        msg = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'},
                },
            ],
        }
        text = ToolCalls([WEATHER, TIME], parallel=True).from_openai_message(msg)
        assert text == (
            '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
            '{"name": "get_time", "arguments": {"tz": "UTC"}}]</tool_call>'
        )
        assert ToolCalls([WEATHER, TIME], parallel=True).validate(text).ok

        declined = c.from_openai_message({"role": "assistant", "content": "I can't."})
        assert declined == "<tool_call>[]</tool_call>"
        assert c.validate(declined).reason == "no_call_not_allowed"
        raw = {"content": call("get_time", tz="UTC")}
        assert c.from_openai_message(raw) == raw["content"]
        broken = {"tool_calls": [{"function": {"name": "get_time", "arguments": '{"tz": '}}]}
        assert c.validate(c.from_openai_message(broken)).reason == "parse_error"
        no_args = {"tool_calls": [{"function": {"name": "noop", "arguments": ""}}]}
        assert (
            ToolCalls([{"name": "noop"}])
            .validate(ToolCalls([{"name": "noop"}]).from_openai_message(no_args))
            .ok
        )


_TOOLS = ToolCalls([WEATHER, TIME])
_TOOLS_DECLINE = ToolCalls([WEATHER, TIME], parallel=True, allow_no_call=True)


# ---------------------------------------------------------------- Choice


class TestChoice:
    def test_valid_and_invalid(self) -> None:
        c = Choice(["billing", "tech", "other"])
        assert c.validate("tech") == Verdict.passed("tech")
        assert c.validate("  other\n").value == "other"
        for bad in ("Tech", "tech support", '"tech"', "billing, tech"):
            v = c.validate(bad)
            assert v.reason == "not_a_choice" and "billing" in v.detail

    @pytest.mark.parametrize("labels", [[], ["a", "a"], ["a", ""], [" a"], ["a", 3], "ab"])
    def test_bad_labels(self, labels: object) -> None:
        with pytest.raises(ContractError, match="Choice"):
            Choice(labels)  # type: ignore[arg-type]

    def test_decoding(self) -> None:
        labels = ["yes", "yes_but", 'say "hi"', "back\\slash", "ünï", "two\nlines"]
        c = Choice(labels)
        grammar_ok(c)
        for lab in labels:
            assert decodes(c, lab), lab
        assert not decodes(c, "no") and not decodes(c, "ye") and not decodes(c, " yes")

    def test_openai(self) -> None:
        c = Choice(["a", "b"])
        fmt = c.openai_request()["response_format"]["json_schema"]
        assert fmt["schema"]["properties"]["label"]["enum"] == ["a", "b"]
        assert c.from_openai_message({"content": '{"label": "b"}'}) == "b"
        assert c.from_openai_message({"content": "a"}) == "a"
        assert c.from_openai_message({"content": '{"label": 3}'}) == '{"label": 3}'
        assert c.validate(c.from_openai_message({"content": '{"label": "c"}'})).reason == "not_a_choice"

    def test_instructions_list_labels(self) -> None:
        assert "- a\n- b" in Choice(["a", "b"]).instructions()


# ---------------------------------------------------------------- Regex


class TestRegex:
    def test_valid_and_invalid(self) -> None:
        c = Regex(r"[A-Z]{3}-\d{4}")
        assert c.validate("ABC-1234") == Verdict.passed("ABC-1234")
        assert c.validate("ABC-1234\n").value == "ABC-1234"
        for bad in ("abc-1234", "ABC-12345", "The code is ABC-1234"):
            assert c.validate(bad).reason == "regex_mismatch"
        assert Regex(r"a\s*").validate("a  ").value == "a  "  # whitespace the pattern allows is kept

    @pytest.mark.parametrize(
        "pattern",
        [
            "[a-z",  # neither
            r"(?=a)a",  # look-ahead: Python only
            r"(a)\1",  # back-reference: Python only
            r"\p{L}+",  # Unicode class: Rust only
            r"(?<n>a)",  # Rust-style named group
            "a{,3}",  # Python only
            "[[:alpha:]]",  # POSIX class in Rust, nested set warning in Python
            "",
        ],
    )
    def test_patterns_one_side_cannot_compile(self, pattern: str) -> None:
        with pytest.raises(ContractError, match="Regex"):
            Regex(pattern)

    def test_decoding(self) -> None:
        c = Regex(r"[A-Z]{3}-\d{4}")
        grammar_ok(c)
        assert decodes(c, "ABC-1234")
        assert not decodes(c, "ABC-123") and not decodes(c, "abc-1234") and not decodes(c, "ABC-12345")

    def test_openai_and_instructions(self) -> None:
        c = Regex(r"\d+")
        assert c.openai_request() == {}
        assert c.from_openai_message({"content": "42"}) == "42"
        assert r"/\d+/" in c.instructions()


# ---------------------------------------------------------------- checks


USER = [
    {"role": "system", "content": "You book trips to Rome."},
    {"role": "user", "content": "What's the weather in   new York\nfor 3 days?"},
]


class TestChecks:
    def test_grounded_tool_arguments(self) -> None:
        c = ToolCalls([WEATHER], checks=(grounded_arguments(),))
        assert c.validate(call("get_weather", city="New York", days=3), USER).ok
        v = c.validate(call("get_weather", city="Paris"), USER)
        assert v.reason == "check_failed:grounded" and "get_weather(city)" in v.detail and "Paris" in v.detail
        assert v.value == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
        # only user messages count: "Rome" is in the system prompt
        assert c.validate(call("get_weather", city="Rome"), USER).reason == "check_failed:grounded"

    def test_grounded_min_len_and_skip(self) -> None:
        msgs = [{"role": "user", "content": [{"type": "text", "text": "Weather in Oslo"}]}]
        tool = {
            "name": "w",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            },
        }
        assert (
            ToolCalls([tool], checks=(grounded_arguments(),))
            .validate(call("w", city="oslo", unit="C"), msgs)
            .ok
        )
        c = ToolCalls([tool], checks=(grounded_arguments(min_len=1),))
        assert not c.validate(call("w", city="oslo", unit="C"), msgs).ok
        c = ToolCalls([tool], checks=(grounded_arguments(min_len=1, skip=["unit"]),))
        assert c.validate(call("w", city="oslo", unit="celsius"), msgs).ok

    def test_grounded_json_value_and_model(self) -> None:
        msgs = [{"role": "user", "content": "Ada is 36."}]
        assert (
            JsonSchema(Person, checks=(grounded_arguments(),)).validate('{"name": "Ada", "age": 36}', msgs).ok
        )
        v = JsonSchema(PERSON, checks=(grounded_arguments(),)).validate('{"name": "Bob", "age": 36}', msgs)
        assert v.reason == "check_failed:grounded" and "value.name" in v.detail

    def test_check_decorator(self) -> None:
        @check("adult")
        def adult(value: Person, messages: object) -> str | None:
            return None if value.age >= 18 else f"age {value.age} < 18"

        assert isinstance(adult, Check) and adult.name == "adult"
        c = JsonSchema(Person, checks=(adult,))
        assert c.validate('{"name": "Ada", "age": 36}').ok
        v = c.validate('{"name": "Tim", "age": 9}')
        assert v.reason == "check_failed:adult" and v.detail == "age 9 < 18"

        @check
        def crashes(value: object, messages: object) -> str | None:
            raise KeyError("boom")

        assert crashes.name == "crashes"
        v = JsonSchema(Person, checks=(crashes,)).validate('{"name": "Ada", "age": 36}')
        assert v.reason == "check_failed:crashes" and "KeyError" in v.detail

    def test_checks_change_the_digest(self) -> None:
        assert JsonSchema(PERSON).digest() != JsonSchema(PERSON, checks=(grounded_arguments(),)).digest()


# ---------------------------------------------------------------- shared behaviour


def _all_kinds() -> list[Contract]:
    return [
        JsonSchema(PERSON),
        JsonSchema(Person),
        ToolCalls([WEATHER, TIME], parallel=True),
        Choice(["a", "b"]),
        Regex(r"\d+"),
    ]


class TestShared:
    def test_digest_stable_and_distinct(self) -> None:
        first = [c.digest() for c in _all_kinds()]
        assert first == [c.digest() for c in _all_kinds()]
        assert len(set(first)) == len(first)
        assert ToolCalls([WEATHER]).digest() != ToolCalls([WEATHER], parallel=True).digest()
        assert Choice(["a", "b"]).digest() != Choice(["b", "a"]).digest()
        # key order of the declaration does not matter (spec is serialised with sorted keys)
        reordered = {"required": PERSON["required"], "properties": PERSON["properties"], "type": "object"}
        assert JsonSchema(reordered).digest() == JsonSchema(PERSON).digest()

    def test_contracts_are_hashable_and_comparable(self) -> None:
        a, b = _all_kinds(), _all_kinds()
        assert a == b and {hash(x) for x in a} == {hash(x) for x in b}

    @pytest.mark.parametrize("c", _all_kinds(), ids=lambda c: c.kind)
    def test_common_surface(self, c: Contract) -> None:
        grammar_ok(c)
        json.dumps(c.spec())
        json.dumps(c.openai_request())
        assert c.instructions().strip()
        assert c.kind in ("json_schema", "tool_calls", "choice", "regex")

    def test_contract_from(self) -> None:
        assert isinstance(contract_from(Person), JsonSchema)
        assert isinstance(contract_from(PERSON), JsonSchema)
        assert isinstance(contract_from(["x", "y"]), Choice)
        r = Regex("a+")
        assert contract_from(r) is r
        for bad in ("a+", 3, [], [1, 2], None):
            with pytest.raises(ContractError):
                contract_from(bad)
