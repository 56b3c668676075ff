"""The legacy ``functions``/``function_call`` translation as pure functions (no server, no
model): request -> tools, legacy turns -> tool_calls/tool results, answer -> function_call."""

from __future__ import annotations

from typing import Any

import pytest

from modelladder.contracts import ToolCalls
from modelladder.gateway.errors import APIError
from modelladder.gateway.legacy import legacy_message, modern_messages, modernize
from modelladder.gateway.schemas import ChatCompletionRequest
from modelladder.gateway.translate import plan
from modelladder.ladder.loops import answered_calls
from tests.support.gateway import TIME, WEATHER, scripted_fleet

FUNCTIONS = [WEATHER["function"], TIME["function"]]
USER = [{"role": "user", "content": "weather in Paris?"}]


def _req(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": USER, **fields})


def _plan(**fields: Any) -> Any:
    return plan(_req(**fields), scripted_fleet(), max_tokens_limit=4096, default_max_tokens=256)


@pytest.mark.parametrize(
    ("function_call", "tool_choice"),
    [
        (None, None),
        ("none", "none"),
        ("auto", "auto"),
        ({"name": "get_time"}, {"type": "function", "function": {"name": "get_time"}}),
    ],
)
def test_functions_become_tools_and_function_call_becomes_tool_choice(
    function_call: Any, tool_choice: Any
) -> None:
    fields: dict[str, Any] = {"functions": FUNCTIONS}
    if function_call is not None:
        fields["function_call"] = function_call
    req = modernize(_req(**fields))
    assert req.functions is None and req.function_call is None
    assert [t.model_dump(exclude_none=True) for t in req.tools or []] == [WEATHER, TIME]
    choice = req.tool_choice
    assert (choice if isinstance(choice, str | None) else choice.model_dump()) == tool_choice
    assert req.parallel_tool_calls is False  # a legacy answer holds one call


def test_a_modern_request_is_left_alone() -> None:
    req = _req(tools=[WEATHER], tool_choice="auto")
    assert modernize(req) is req


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"functions": FUNCTIONS, "tools": [WEATHER]}, ["`functions`", "`tools`"]),
        ({"function_call": "auto", "tool_choice": "auto"}, ["`function_call`", "`tool_choice`"]),
        ({"functions": FUNCTIONS, "tool_choice": "required"}, ["`functions`", "`tool_choice`"]),
        ({"functions": FUNCTIONS, "parallel_tool_calls": True}, ["`functions`", "`parallel_tool_calls`"]),
    ],
)
def test_mixing_legacy_and_modern_fields_is_one_clear_400(fields: dict[str, Any], named: list[str]) -> None:
    with pytest.raises(APIError) as info:
        modernize(_req(**fields))
    err = info.value.body()["error"]
    assert info.value.status == 400 and err["type"] == "invalid_request_error"
    assert err["code"] == "conflicting_parameters" and err["param"] in ("functions", "function_call")
    assert all(n in err["message"] for n in named), err["message"]
    assert '"type": "function"' in err["message"]  # the fix: how to send them as tools


def test_function_call_naming_an_unknown_function_names_function_call() -> None:
    for fields in (
        {"functions": FUNCTIONS, "function_call": {"name": "nope"}},
        {"function_call": {"name": "f"}},
    ):
        with pytest.raises(APIError) as info:
            modernize(_req(**fields))
        assert info.value.status == 400 and info.value.param == "function_call", info.value.message


def test_plan_marks_the_request_legacy_with_a_single_call_contract() -> None:
    p = _plan(functions=FUNCTIONS, function_call={"name": "get_weather"})
    assert p.legacy and p.kind == "tools" and p.tags["api"] == "functions"
    assert isinstance(p.step.contract, ToolCalls) and p.step.contract.parallel is False
    assert "ignored" not in p.tags  # honoured, not ignored
    modern = _plan(tools=[WEATHER])
    assert not modern.legacy and "api" not in modern.tags


def test_a_contract_error_names_functions_not_tools() -> None:
    bad = {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "no-such-type"}}}}
    with pytest.raises(APIError) as info:
        _plan(functions=[bad])
    assert info.value.status == 400 and info.value.param == "functions", info.value.body()


def _legacy_history(result_name: str | None = "get_weather") -> list[dict[str, Any]]:
    call = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    result: dict[str, Any] = {"role": "function", "content": "sunny, 21 C"}
    if result_name is not None:
        result["name"] = result_name
    return [*USER, {"role": "assistant", "content": None, "function_call": call}, result]


def test_legacy_turns_become_a_tool_call_and_its_result() -> None:
    user, assistant, tool = modern_messages(_legacy_history())
    assert user == USER[0]
    (call,) = assistant["tool_calls"]
    assert "function_call" not in assistant and call["id"] == "call_fn1"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert tool == {"role": "tool", "tool_call_id": "call_fn1", "content": "sunny, 21 C"}
    # the loop guard sees the call as answered, as it would for role: tool
    assert answered_calls([user, assistant, tool]) == answered_calls(
        [user, {**assistant, "tool_calls": [{**call, "id": "x"}]}, {**tool, "tool_call_id": "x"}]
    )
    assert answered_calls([user, assistant, tool])


def test_a_result_without_a_matching_call_keeps_no_call_id() -> None:
    assert modern_messages(_legacy_history(result_name=None))[2]["tool_call_id"] == "call_fn1"
    other = modern_messages(_legacy_history(result_name="get_time"))[2]
    assert other == {"role": "tool", "content": "sunny, 21 C"}
    lone = modern_messages([*USER, {"role": "function", "name": "f", "content": None}])[1]
    assert lone == {"role": "tool", "content": ""}


def test_modern_messages_pass_unchanged_and_both_call_forms_are_refused() -> None:
    tc = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    modern = [*USER, {"role": "assistant", "tool_calls": [tc]}, {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]  # fmt: skip
    assert modern_messages(modern) == modern
    both = [*USER, {"role": "assistant", "tool_calls": [tc], "function_call": tc["function"]}]
    with pytest.raises(APIError) as info:
        modern_messages(both)
    assert info.value.status == 400 and info.value.param == "messages[1].function_call"


def test_the_answer_comes_back_as_one_function_call() -> None:
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'}},
    ]  # fmt: skip
    message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": calls}
    out, finish = legacy_message(message, "tool_calls")
    assert finish == "function_call" and "tool_calls" not in out
    assert out == {"role": "assistant", "content": None, "refusal": None,
                   "function_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}  # fmt: skip
    text = {"role": "assistant", "content": "hello", "refusal": None}
    assert legacy_message(text, "stop") == (text, "stop")
