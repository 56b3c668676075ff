"""Call or answer (``ToolCalls(answer=...)``) and the loop guard: the contract's grammar and
validation, the recorded decision, and the ladder's loop policy (scripted backends: pure
policy logic; the real-model loops are in test_frameworks.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelladder import Ladder, Step
from modelladder.backends.prompting import prepare_messages
from modelladder.backends.scripted import ScriptedBackend
from modelladder.contracts import Answer, Check, ContractError, JsonSchema, ToolCalls, contract_from_spec
from modelladder.contracts.tools import ANSWER_STRING_CAP
from modelladder.ladder.loops import LOOP_REASON, answered_calls, repeated_calls
from modelladder.ladder.outcome import Attempt, Confidence
from modelladder.ladder.policy import Policy, judge
from modelladder.traces import TraceStore
from tests.support.contracts import WEATHER, decodes
from tests.support.ladder import FLEET, gen

SCHEMA = {"type": "object", "properties": {"temp_c": {"type": "number"}}, "required": ["temp_c"]}
CALL = '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</tool_call>'
TEXT = ToolCalls([WEATHER], answer=True)
JSON = ToolCalls([WEATHER], answer=JsonSchema(SCHEMA))


def _history(args: dict[str, Any], with_id: bool = True) -> list[dict[str, Any]]:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps(args)},
    }
    tool: dict[str, Any] = {"role": "tool", "content": "sunny"}
    if with_id:
        tool["tool_call_id"] = "c1"
    return [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        tool,
    ]


# -- the contract ----------------------------------------------------------------------------


def test_grammar_offers_calls_or_a_text_answer() -> None:
    assert decodes(TEXT, CALL) and decodes(TEXT, "It is sunny in Paris.")
    assert not decodes(TEXT, "<b>hi</b>") and not decodes(TEXT, "<tool_call>[]</tool_call>")
    assert decodes(JSON, CALL) and decodes(JSON, '{"temp_c": 21}') and not decodes(JSON, "It is sunny.")
    only = JSON.answer_only()
    assert only is not None and decodes(only, '{"temp_c": 21}') and not decodes(only, CALL)


def test_validation_and_decision() -> None:
    v = TEXT.validate("  It is sunny.  ")
    assert v.ok and v.value == Answer("It is sunny.", "It is sunny.", free=True)
    assert TEXT.decision("It is sunny.") == "answer" and TEXT.decision(CALL) == "call"
    assert TEXT.validate(CALL).value == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    # once a reply has begun, a later "<tool_call>" is text: the first character decides
    assert TEXT.validate("Sure. " + CALL).ok and TEXT.decision("Sure. " + CALL) == "answer"
    bad = JSON.validate('{"temp_c": "warm"}')
    assert not bad.ok and bad.reason == "schema_violation" and bad.detail.startswith("the answer")
    assert JSON.validate('{"temp_c": 21}').value == Answer('{"temp_c": 21}', {"temp_c": 21}, free=False)
    decline = ToolCalls([WEATHER], allow_no_call=True)
    assert decline.decision("<tool_call>[]</tool_call>") == "decline" and decline.decision("no") == "decline"


def test_checks_on_calls_do_not_judge_answers() -> None:
    c = ToolCalls([WEATHER], answer=True, checks=(Check("never", lambda value, messages: "always fails"),))
    assert c.validate("Hello!").ok and not c.validate(CALL).ok


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"answer": True, "tool_choice": "required"}, "forces a call"),
        ({"answer": True, "allow_no_call": True}, "either allow_no_call"),
        ({"tool_choice": "none"}, "free-text step"),
        ({"answer": "text"}, "answer must be True"),
    ],
)
def test_contradictions_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ContractError, match=match):
        ToolCalls([WEATHER], **kwargs)


def test_openai_request_spec_and_digest() -> None:
    req = JSON.openai_request()
    assert req["tool_choice"] == "auto" and req["response_format"]["type"] == "json_schema"
    assert contract_from_spec({"kind": "tool_calls", "spec": JSON.spec()}).digest() == JSON.digest()
    assert contract_from_spec({"kind": "tool_calls", "spec": TEXT.spec()}).digest() == TEXT.digest()
    assert "answer" not in ToolCalls([WEATHER]).spec()  # existing contracts keep their digests
    assert TEXT.from_openai_message({"role": "assistant", "content": "Hi"}) == "Hi"


def test_instructions_follow_the_turn_after_the_conversation() -> None:
    first = [{"role": "user", "content": "weather?"}]
    after = _history({"city": "Paris"})
    # the system prompt is the same on every hop (the prompt cache's prefix)...
    assert TEXT.instructions_for(first) == TEXT.instructions_for(after)
    assert "answer the user directly" in TEXT.instructions_for(first)
    # ...and what changes after the results comes last, inside the last turn
    assert TEXT.turn_instructions(first) == ""
    assert "Answer the user's question from them" in TEXT.turn_instructions(after)
    shown = prepare_messages(after, TEXT)
    assert shown[0] == prepare_messages(first, TEXT)[0]
    assert shown[-1]["role"] == "tool" and shown[-1]["content"].endswith(TEXT.turn_instructions(after))
    assert TEXT.decision_contract([{"role": "user", "content": "x"}]) is not None
    assert TEXT.decision_contract(_history({"city": "Paris"})) is None


# -- the loop guard --------------------------------------------------------------------------


def test_answered_calls_by_id_and_without() -> None:
    call = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert repeated_calls(call, _history({"city": "Paris"})) == ["get_weather"]
    assert repeated_calls(call, _history({"city": "Paris"}, with_id=False)) == ["get_weather"]
    assert repeated_calls(call, _history({"city": "Rome"})) == []
    assert answered_calls(_history({"city": "Paris"})[:2]) == set()  # called, not yet answered


def test_a_new_user_turn_may_repeat_a_call() -> None:
    """BFCL multi-turn: ``cd(folder='temp')`` again in a later turn is a request, not a loop."""
    call = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    again = [*_history({"city": "Paris"}), {"role": "assistant", "content": "Sunny."},
             {"role": "user", "content": "And now?"}]  # fmt: skip
    assert repeated_calls(call, again) == []
    assert repeated_calls(call, [*again, *_history({"city": "Paris"})[1:]]) == ["get_weather"]


def test_judge_puts_the_loop_after_the_contract_and_skips_the_gate_for_text() -> None:
    pol = Policy(min_mean_logprob=-0.1)
    looped = Attempt(0, "tiny", "edge", verdict=TEXT.validate(CALL), repeated_call=True)
    assert judge(looped, pol) == LOOP_REASON
    unsure = Confidence(-3.0, -5.0, 4)
    assert judge(Attempt(0, "tiny", "edge", verdict=TEXT.validate("Hi"), confidence=unsure), pol) is None
    assert (
        judge(Attempt(0, "tiny", "edge", verdict=TEXT.validate(CALL), confidence=unsure), pol)
        == "low_confidence:mean"
    )


def test_ladder_escalates_a_loop_then_answers_on_the_smallest_looping_rung() -> None:
    lad = Ladder(FLEET, store=TraceStore(":memory:"), backends={
        "tiny": ScriptedBackend.replaying("tiny", [gen(CALL), gen("It is sunny in Paris.")]),
        "small": ScriptedBackend.replaying("small", [gen(CALL)]),
        "big": ScriptedBackend.replaying("big", [gen(CALL)]),
    })  # fmt: skip
    r = lad.run(Step("agent", TEXT), _history({"city": "Paris"}))
    assert r.outcome == "resolved" and r.rung == "tiny" and r.value.text == "It is sunny in Paris."
    assert [a.escalation_reason for a in r.attempts] == [LOOP_REASON] * 3 + [None]
    assert [a.decision for a in r.attempts] == ["call", "call", "call", "answer"] and r.attempts[
        -1
    ].forced_answer
    stored = lad.store.get_run(r.run_id)
    assert [a.decision for a in stored.attempts] == ["call", "call", "call", "answer"]


def test_a_forced_call_is_never_a_loop() -> None:
    lad = Ladder(FLEET, backends={"tiny": ScriptedBackend.replaying("tiny", [gen(CALL)])})
    r = lad.run(Step("agent", ToolCalls([WEATHER], tool_choice="required")), _history({"city": "Paris"}))
    assert r.outcome == "resolved" and not r.attempts[0].repeated_call


FINAL = {"type": "function", "function": {"name": "final_result", "description": "The final response",
         "parameters": {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}}}  # fmt: skip
FINAL_CALL = '<tool_call>[{"name": "final_result", "arguments": {"summary": "sunny"}}]</tool_call>'


def test_a_forced_call_that_repeats_falls_back_to_the_other_tools() -> None:
    """pydantic-ai's default output mode: ``tool_choice="required"`` with its ``final_result``
    tool beside the agent's tools. A rung that only repeats the answered call is a loop; the
    last word is decoded with that tool ruled out, so the agent's output tool is called."""

    def tiny(call: Any) -> str:
        names = [t["name"] for t in call.contract.tools]
        if "get_weather" in names:
            return CALL
        assert call.contract.string_cap == ANSWER_STRING_CAP  # the forced call cannot ramble
        assert not call.contract.parallel  # nor call final_result ten times over
        return FINAL_CALL

    lad = Ladder(FLEET, backends={"tiny": ScriptedBackend("tiny", tiny),
                                  "small": ScriptedBackend.replaying("small", [gen(CALL)]),
                                  "big": ScriptedBackend.replaying("big", [gen(CALL)])})  # fmt: skip
    r = lad.run(
        Step("agent", ToolCalls([WEATHER, FINAL], tool_choice="required")), _history({"city": "Paris"})
    )
    assert r.outcome == "resolved" and r.rung == "tiny" and r.value == [
        {"name": "final_result", "arguments": {"summary": "sunny"}}]  # fmt: skip
    assert [a.escalation_reason for a in r.attempts] == [LOOP_REASON] * 3 + [None] and r.attempts[
        -1
    ].forced_answer
    # a new call (other arguments) under "required" is no loop
    fresh = lad.run(
        Step("agent", ToolCalls([WEATHER, FINAL], tool_choice="required")), _history({"city": "Rome"})
    )
    assert fresh.rung == "tiny" and not fresh.attempts[0].repeated_call


def test_a_capped_call_decodes_one_compact_call() -> None:
    """The forced call's grammar (measured: Gemma padded its call with blank lines, then called
    final_result again and again, until max_tokens): one call, no free whitespace, capped strings;
    the step's own grammar still admits all three."""
    step = ToolCalls([WEATHER, FINAL], parallel=True, tool_choice="required")
    forced = ToolCalls([FINAL], tool_choice="required", string_cap=ANSWER_STRING_CAP)
    one = '<tool_call>[{"name": "final_result", "arguments": {"summary": "sunny"}}]</tool_call>'
    padded = (
        '<tool_call>[{"name": "final_result", "arguments": {"summary": "sunny"}\n    \n    }]</tool_call>'
    )
    twice = one.replace("}}]", '}}, {"name": "final_result", "arguments": {"summary": "sunny"}}]')
    long = one.replace("sunny", "s" * (ANSWER_STRING_CAP + 1))
    assert decodes(forced, one)
    assert not any(decodes(forced, t) for t in (padded, twice, long))
    assert all(decodes(step, t) for t in (one, padded, twice, long))


def test_no_fallback_when_the_policy_stops_first() -> None:
    lad = Ladder(FLEET, backends={"tiny": ScriptedBackend.replaying("tiny", [gen(CALL), gen("answer")])})
    r = lad.run(Step("agent", TEXT, policy=Policy(max_attempts=1)), _history({"city": "Paris"}))
    assert r.outcome == "unresolved" and len(r.attempts) == 1


def test_a_failed_forced_answer_moves_to_the_next_looping_rung() -> None:
    lad = Ladder(FLEET, backends={
        "tiny": ScriptedBackend.replaying("tiny", [gen(CALL), gen("   ")]),
        "small": ScriptedBackend.replaying("small", [gen(CALL), gen("Sunny.")]),
        "big": ScriptedBackend.replaying("big", [gen(CALL)]),
    })  # fmt: skip
    r = lad.run(Step("agent", TEXT), _history({"city": "Paris"}))
    assert r.outcome == "resolved" and r.rung == "small" and r.value.text == "Sunny."
    assert [(a.rung, a.forced_answer) for a in r.attempts[3:]] == [("tiny", True), ("small", True)]


def test_a_forced_json_answer_cannot_ramble_in_a_string() -> None:
    only = ToolCalls([WEATHER], answer=JsonSchema({"type": "object", "properties": {"answer": {"type": "string"}},
                                                   "required": ["answer"]})).answer_only()  # fmt: skip
    assert only is not None
    assert decodes(only, json.dumps({"answer": "x" * 160})) and not decodes(
        only, json.dumps({"answer": "x" * 161})
    )
    assert only.validate(json.dumps({"answer": "x" * 400})).ok  # validation keeps the schema as declared
