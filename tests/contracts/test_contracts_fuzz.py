"""The contracts' parsers and validators under hypothesis, with counts (docs/reliability.md).

For each kind, arbitrary text (and, for tool calls, arbitrary JSON as an endpoint might send
it in ``message``) must never crash the validator, and whatever it *accepts* must satisfy
the contract by an independent check: ``jsonschema`` for JSON values and tool arguments, set
membership for a choice, Python's ``re.fullmatch`` for a pattern. So an accepted answer is a
valid one, whatever a model or an upstream produced. The tests count the inputs they tried
and print the figures (``-s``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelladder.contracts import Choice, JsonSchema, Regex, ToolCalls
from modelladder.contracts.tools import CLOSE, OPEN, Answer
from tests.support.contracts import WEATHER

N = 600  # inputs per property: the six together take ~15 s on 2 shared cores
TRIED: Counter[str] = Counter()
FUZZ = settings(max_examples=N, deadline=None, suppress_health_check=list(HealthCheck), database=None)

ORDER = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "items": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3},
        "status": {"enum": ["open", "paid"]},
        "note": {"type": ["string", "null"]},
    },
    "required": ["id", "status"],
    "additionalProperties": False,
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}  # fmt: skip
PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)
orders = st.fixed_dictionaries(
    {"id": st.integers(min_value=1), "status": st.sampled_from(["open", "paid"])},
    optional={"items": st.lists(st.text(max_size=8), max_size=3), "note": st.none() | st.text(max_size=10)},
)
# text near the grammar: fragments of calls and JSON glued to noise, and JSON values dumped
near_calls = st.lists(
    st.sampled_from([OPEN, CLOSE, "[", "]", "{", "}", '"name": ', '"get_weather"', '"get_time"', '"rm"', ", ",
                     '"arguments": ', '{"city": "Oslo"}', '{"tz": 1}', '"days": 9', "null", "\n"])
    | st.text(max_size=6),
    max_size=14,
).map("".join)  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    print(
        "\ncontract fuzz: "
        + ", ".join(f"{k} {v}" for k, v in sorted(TRIED.items()))
        + f"; total {sum(TRIED.values())}"
    )


@FUZZ
@given(st.one_of(st.text(), json_values.map(json.dumps), orders.map(json.dumps)))
def test_json_schema_accepts_only_schema_valid_values(text: str) -> None:
    TRIED["json_schema"] += 1
    v = JsonSchema(ORDER).validate(text)
    if v.ok:
        jsonschema.validate(v.value, ORDER)
        assert v.value == json.loads(text)


@FUZZ
@given(orders)
def test_json_schema_accepts_every_valid_value(value: dict[str, Any]) -> None:
    TRIED["json_schema_valid"] += 1
    v = JsonSchema(ORDER).validate(json.dumps(value))
    assert v.ok and v.value == value, v


def _check_calls(contract: ToolCalls, text: str) -> None:
    v = contract.validate(text)
    if not v.ok:
        assert v.reason  # a failure says why
        return
    if isinstance(v.value, Answer):
        assert contract.answers
        return
    assert isinstance(v.value, list)
    for call in v.value:
        assert call["name"] in PARAMS  # never a tool the step did not offer
        jsonschema.validate(call["arguments"], PARAMS[call["name"]])


@FUZZ
@given(st.one_of(st.text(), near_calls))
def test_tool_calls_accept_only_offered_tools_with_valid_arguments(text: str) -> None:
    TRIED["tool_calls_text"] += 1
    for contract in (ToolCalls([WEATHER, TIME], parallel=True), ToolCalls([WEATHER, TIME], answer=True)):
        _check_calls(contract, text)


tool_call_dicts = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "type": st.sampled_from(["function", "other"]) | json_values,
        "function": st.fixed_dictionaries({}, optional={
            "name": st.sampled_from(["get_weather", "get_time", "rm", ""]) | json_values,
            "arguments": st.one_of(st.text(max_size=20), json_values.map(json.dumps), json_values,
                                   st.just('{"city": "Oslo"}'), st.just('{"tz": "UTC"}')),
        }) | json_values,
    },
)  # fmt: skip
messages = st.fixed_dictionaries(
    {}, optional={"content": st.none() | st.text(max_size=20) | near_calls | json_values,
                  "tool_calls": st.none() | st.lists(tool_call_dicts | json_values, max_size=3) | json_values},
)  # fmt: skip


@FUZZ
@given(messages)
def test_tool_calls_from_any_openai_message(message: dict[str, Any]) -> None:
    """What an endpoint sends back, however malformed: one canonical text, then the validator."""
    TRIED["tool_calls_message"] += 1
    contract = ToolCalls([WEATHER, TIME], parallel=True)
    text = contract.from_openai_message(message)
    assert isinstance(text, str)
    _check_calls(contract, text)


LABELS = ["refund", "exchange", "other", "Ünïcode label"]


@FUZZ
@given(st.one_of(st.text(), st.sampled_from(LABELS).map(lambda s: f"  {s}\n"), st.sampled_from(LABELS)))
def test_choice_accepts_exactly_its_labels(text: str) -> None:
    TRIED["choice"] += 1
    v = Choice(LABELS).validate(text)
    assert v.ok == (text.strip() in LABELS)
    if v.ok:
        assert v.value == text.strip()
    message = Choice(LABELS).from_openai_message({"content": json.dumps({"label": text})})
    assert isinstance(message, str)


PATTERNS = [r"[A-Z]{2}-\d{3,5}", r"(yes|no)( because [a-z ]{1,20})?", r"\d{4}-\d{2}-\d{2}"]


@FUZZ
@given(st.sampled_from(PATTERNS), st.one_of(st.text(), st.from_regex(r"[A-Z]{2}-\d{3,5}", fullmatch=True),
                                            st.from_regex(r"\d{4}-\d{2}-\d{2}", fullmatch=True)))  # fmt: skip
def test_regex_accepts_exactly_what_python_fullmatches(pattern: str, text: str) -> None:
    TRIED["regex"] += 1
    v = Regex(pattern).validate(text)
    expected = bool(text.strip()) and any(re.fullmatch(pattern, c) for c in (text, text.strip()))
    assert v.ok == expected, (pattern, text, v)
