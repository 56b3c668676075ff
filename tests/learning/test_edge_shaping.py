"""What an edge rung sees: tool selection, compaction, retrieved demonstrations, the memo.

The ladder's shaping seam is policy logic, so the rungs here are scripted backends (they
record what they were shown); the index and the trace store are the real SQLite ones. The
real-model check (an answer that turns right with one retrieved example) is in
``tests/learning/test_retrieval_model.py``.
"""

from __future__ import annotations

import json

import pytest

from modelladder.backends import ScriptedBackend
from modelladder.contracts import ToolCalls
from modelladder.fleet import parse_fleet
from modelladder.fleet_types import Policy
from modelladder.ladder import Ladder, Resolved, Step
from modelladder.learning.compaction import compact_history
from modelladder.learning.edge_shaper import EdgeShaper
from modelladder.learning.example_index import Example, ExampleIndex
from modelladder.learning.example_query import input_digest, step_query
from modelladder.learning.tool_selection import called_tools, rank_tools, select_tools
from modelladder.traces import TraceStore


def _tool(name: str, desc: str, **props: str) -> dict:
    return {"type": "function", "function": {"name": name, "description": desc, "parameters": {
        "type": "object", "properties": {p: {"type": "string", "description": d} for p, d in props.items()},
        "required": list(props)}}}  # fmt: skip


TOOLS = [
    _tool("get_weather", "Current weather for a city", city="the city name"),
    _tool("send_email", "Send an email message to a recipient", to="address", body="text"),
    _tool("book_flight", "Book a flight between two airports", origin="airport code", dest="airport code"),
    _tool("list_files", "List the files in the current directory"),
    _tool("convert_currency", "Convert an amount between currencies", amount="how much", to="currency code"),
]
CALL = '<tool_call>[{{"name": "{}", "arguments": {}}}]</tool_call>'


def _calls_text(name: str, **args: str) -> str:
    return CALL.format(name, json.dumps(args))


FLEET = parse_fleet({"rung": [
    {"name": "memo", "backend": "memo", "params": 1, "placement": "edge"},
    {"name": "tiny", "backend": "llamacpp", "path": "x.gguf", "params": 100, "placement": "edge"},
    {"name": "big", "backend": "openai", "url": "http://127.0.0.1:9/v1", "params": 10_000, "placement": "cloud"},
]})  # fmt: skip


# --------------------------------------------------------------------------- tool selection


def test_select_tools_ranks_by_the_question_and_keeps_called_tools_in_declared_order():
    msgs = [{"role": "user", "content": "What's the weather in Paris? Then email it to Bob."}]
    assert rank_tools(TOOLS, "weather Paris")[0][0] == "get_weather"
    assert select_tools(TOOLS, msgs, 2) == ["get_weather", "send_email"]
    called = msgs + [
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "list_files", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a.txt"},
    ]  # fmt: skip
    assert called_tools(called) == ["list_files"]
    offered = select_tools(TOOLS, called, 2)
    assert "list_files" in offered and len(offered) == 2
    assert offered == [n for n in [t["function"]["name"] for t in TOOLS] if n in offered]
    assert select_tools(TOOLS, msgs, 1, keep=["book_flight", "nope"]) == ["book_flight"]
    assert len(select_tools(TOOLS, msgs, 50)) == len(TOOLS)


def test_offering_narrows_decoding_and_validation_to_the_offered_tools():
    c = ToolCalls(TOOLS, allow_no_call=True)
    n = c.offering(["get_weather", "send_email"])
    assert [t["name"] for t in n.tools] == ["get_weather", "send_email"]
    assert "book_flight" not in n.grammar()
    assert n.validate(_calls_text("get_weather", city="Paris")).ok
    assert not n.validate(_calls_text("book_flight", origin="CDG", dest="JFK")).ok
    assert c.validate(_calls_text("book_flight", origin="CDG", dest="JFK")).ok
    assert c.offering([t["function"]["name"] for t in TOOLS]) is c


# --------------------------------------------------------------------------- compaction


def test_compaction_keeps_newest_outputs_within_budget_and_records_the_rule():
    msgs = [{"role": "user", "content": "go"}]
    for i in range(4):
        msgs += [{"role": "assistant", "content": "", "tool_calls": [
                     {"id": f"c{i}", "type": "function", "function": {"name": "list_files", "arguments": "{}"}}]},
                 {"role": "tool", "tool_call_id": f"c{i}", "content": str(i) * 1000}]  # fmt: skip
    out, rule = compact_history(msgs, budget_tokens=600)  # 2,400 characters
    assert rule is not None and [c["index"] for c in rule["cut"]] == [2, 4]
    assert out[8]["content"] == "3" * 1000 and out[6]["content"] == "2" * 1000
    assert out[2]["content"].startswith("0" * 200) and "800 characters cut" in out[2]["content"]
    assert msgs[2]["content"] == "0" * 1000  # the caller's messages are untouched
    assert compact_history(msgs, budget_tokens=600) == (out, rule)  # deterministic
    assert compact_history(msgs, budget_tokens=10_000) == (msgs, None)


# --------------------------------------------------------------------------- through the ladder


class Seen:
    """A scripted rung that records what it was shown and answers with a fixed text."""

    def __init__(self, answer: str):
        self.answer = answer
        self.calls: list = []

    def __call__(self, call):
        self.calls.append(call)
        return self.answer


def _ladder(
    tmp_path, tiny: Seen, big: Seen, index: ExampleIndex | None = None, **kw
) -> tuple[Ladder, TraceStore]:
    store = TraceStore(tmp_path / "t.sqlite")
    backends = {"tiny": ScriptedBackend("tiny", tiny), "big": ScriptedBackend("big", big)}
    if index is not None:
        from modelladder.learning.memo import MemoBackend

        backends["memo"] = MemoBackend(index)
    return Ladder(FLEET, store=store, backends=backends, shaper=EdgeShaper(index, **kw)), store


def test_tool_selection_at_the_edge_only_and_recorded_in_the_trace(tmp_path):
    tiny, big = (
        Seen(_calls_text("book_flight", origin="CDG", dest="JFK")),
        Seen(_calls_text("get_weather", city="Paris")),
    )
    ladder, store = _ladder(tmp_path, tiny, big)
    step = Step("ask", ToolCalls(TOOLS, allow_no_call=True), policy=Policy(max_tools=2, memo=False))
    res = ladder.run(step, [{"role": "user", "content": "What's the weather in Paris?"}])
    assert isinstance(res, Resolved) and res.rung == "big"
    shown = [t["name"] for t in tiny.calls[0].contract.tools]
    assert len(shown) == 2 and "get_weather" in shown and "book_flight" not in shown
    assert len(big.calls[0].contract.tools) == len(TOOLS)  # the cloud rung gets the step as sent
    edge = res.attempts[0]
    assert edge.verdict is not None and not edge.verdict.ok  # a tool it was not offered
    assert edge.shaping == {"tools": shown} and res.attempts[1].shaping is None
    assert store.get_run(res.run_id).attempts[0].shaping == {"tools": shown}
    store.close()


def test_no_shaping_without_a_policy_asking_for_it(tmp_path):
    tiny, big = Seen(_calls_text("get_weather", city="Paris")), Seen("")
    ladder, store = _ladder(tmp_path, tiny, big)
    res = ladder.run(
        Step("ask", ToolCalls(TOOLS), policy=Policy(memo=False)), [{"role": "user", "content": "Paris?"}]
    )
    assert res.rung == "tiny" and res.attempts[0].shaping is None
    assert len(tiny.calls[0].contract.tools) == len(TOOLS)
    store.close()


def _example(
    id_: str, question: str, answer: dict, *, key: str = "ask", episode: str | None = None
) -> Example:
    msgs = [{"role": "user", "content": question}]
    return Example(id=id_, key=key, query=step_query(msgs), digest=input_digest(msgs), messages=msgs,
                   value=[answer], text=_calls_text(answer["name"], **answer["arguments"]), source="checker",
                   created_at=0.0, episode=episode)  # fmt: skip


def test_retrieved_examples_are_prior_turns_after_the_system_text_nearest_last(tmp_path):
    index = ExampleIndex(tmp_path / "ex.sqlite")
    index.add_many([
        _example("r1", "What's the weather in Rome?", {"name": "get_weather", "arguments": {"city": "Rome"}}),
        _example("r2", "Email Bob the notes", {"name": "send_email", "arguments": {"to": "bob", "body": "notes"}}),
        _example("r3", "weather in Oslo and Paris today?", {"name": "get_weather", "arguments": {"city": "Oslo"}},
                 episode="ep-same"),
    ])  # fmt: skip
    tiny, big = Seen(_calls_text("get_weather", city="Paris")), Seen("")
    ladder, store = _ladder(tmp_path, tiny, big, index)
    step = Step("ask", ToolCalls(TOOLS), system="You help.", policy=Policy(examples_k=2, memo=False))
    res = ladder.run(
        step, [{"role": "user", "content": "What's the weather in Paris?"}], episode_id="ep-same"
    )
    shown = tiny.calls[0].messages
    assert shown[0] == {"role": "system", "content": "You help."}
    assert shown[-1] == {"role": "user", "content": "What's the weather in Paris?"}
    demo_answers = [m["tool_calls"][0]["function"]["name"] for m in shown if m.get("tool_calls")]
    assert demo_answers[-1] == "get_weather"  # the nearest example sits next to the question
    ids = [e["id"] for e in res.attempts[0].shaping["examples"]]
    assert "r3" not in ids and ids[0] == "r1"  # its own conversation is never shown (no leak)
    assert res.attempts[0].shaping["examples_excluded"] == 1
    # validation and the trace keep the conversation as sent, not the demonstrations
    assert store.get_run(res.run_id).messages[-1]["content"] == "What's the weather in Paris?"
    assert not any("Rome" in json.dumps(m) for m in store.get_run(res.run_id).messages)
    store.close()
    index.close()


def test_an_example_that_no_longer_validates_is_skipped_and_counted(tmp_path):
    index = ExampleIndex(tmp_path / "ex.sqlite")
    index.add(_example("old", "weather in Paris", {"name": "get_forecast", "arguments": {"city": "Paris"}}))
    tiny = Seen(_calls_text("get_weather", city="Paris"))
    ladder, store = _ladder(tmp_path, tiny, Seen(""), index)
    res = ladder.run(Step("ask", ToolCalls(TOOLS), policy=Policy(examples_k=1, memo=False)),
                     [{"role": "user", "content": "weather in Paris"}])  # fmt: skip
    assert res.attempts[0].shaping == {"examples_invalid": 1}
    assert len(tiny.calls[0].messages) == 1  # nothing shown
    store.close()
    index.close()


def test_memo_answers_an_identical_input_for_free_and_respects_side_effects(tmp_path):
    index = ExampleIndex(tmp_path / "ex.sqlite")
    index.add(
        _example(
            "m1", "What's the weather in Paris?", {"name": "get_weather", "arguments": {"city": "Paris"}}
        )
    )
    tiny, big = Seen(_calls_text("get_weather", city="Lyon")), Seen("")
    ladder, store = _ladder(tmp_path, tiny, big, index)
    msgs = [{"role": "user", "content": "What's the  weather in Paris?"}]  # whitespace differs: same input
    res = ladder.run(Step("ask", ToolCalls(TOOLS)), msgs)
    assert res.rung == "memo" and res.value == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert res.cost_usd == 0 and not tiny.calls
    other = ladder.run(Step("ask", ToolCalls(TOOLS)), [{"role": "user", "content": "Weather in Lyon?"}])
    assert [a.rung for a in other.attempts] == ["memo", "tiny"] and other.attempts[0].error == "memo_miss"
    guarded = ladder.run(Step("ask", ToolCalls(TOOLS), policy=Policy(side_effects=True)), msgs)
    assert [a.rung for a in guarded.attempts] == ["tiny"]  # tools with side effects: no memo
    off = ladder.run(Step("ask", ToolCalls(TOOLS), policy=Policy(memo=False)), msgs)
    assert [a.rung for a in off.attempts] == ["tiny"]
    store.close()
    index.close()


def test_compaction_reaches_the_edge_and_the_trace_but_not_the_cloud(tmp_path):
    long = "x" * 5000
    msgs = [{"role": "user", "content": "list"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "list_files", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": long},
            {"role": "user", "content": "and the weather in Paris?"}]  # fmt: skip
    tiny, big = Seen("nonsense"), Seen(_calls_text("get_weather", city="Paris"))
    ladder, store = _ladder(tmp_path, tiny, big)
    res = ladder.run(
        Step("ask", ToolCalls(TOOLS), policy=Policy(history_budget_tokens=100, memo=False)), msgs
    )
    assert res.rung == "big"
    assert len(tiny.calls[0].messages[2]["content"]) < 500 and big.calls[0].messages[2]["content"] == long
    rule = store.get_run(res.run_id).attempts[0].shaping["compaction"]
    assert rule["budget_tokens"] == 100 and rule["cut"] == [{"index": 2, "chars": 5000, "kept": 400}]
    store.close()


def test_a_failing_shaper_never_breaks_the_step(tmp_path):
    class Broken:
        def shape(self, request):
            raise RuntimeError("index gone")

    tiny = Seen(_calls_text("get_weather", city="Paris"))
    ladder = Ladder(FLEET, backends={"tiny": ScriptedBackend("tiny", tiny), "big": ScriptedBackend("big", Seen(""))},
                    shaper=Broken())  # fmt: skip
    res = ladder.run(Step("ask", ToolCalls(TOOLS), policy=Policy(max_tools=1, memo=False)),
                     [{"role": "user", "content": "Paris weather"}])  # fmt: skip
    assert res.rung == "tiny" and res.attempts[0].shaping is None


@pytest.mark.parametrize("bad", [{"examples_k": -1}, {"max_tools": 0}, {"history_budget_tokens": 0}])
def test_policy_rejects_bad_shaping_values(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Policy(**bad)


def test_examples_go_before_the_current_request_and_one_turn_shows_its_latest_step(tmp_path):
    """Earlier turns stay a shared prefix; of an example turn's several steps the one with the
    most calls (the whole sequence the teacher made) is shown, once."""
    index = ExampleIndex(tmp_path / "ex.sqlite")
    ask = [{"role": "user", "content": "weather in Rome please"}]
    call = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
            }
        ],
    }
    done = ask + [call, {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]  # fmt: skip
    for id_, msgs, value, text in (("k0", ask, [{"name": "get_weather", "arguments": {"city": "Rome"}}],
                                    _calls_text("get_weather", city="Rome")),
                                   ("k1", done, [], "<tool_call>[]</tool_call>")):  # fmt: skip
        index.add(Example(id=id_, key="ask", query=step_query(msgs), digest=input_digest(msgs), messages=msgs,
                          value=value, text=text, source="checker", created_at=0.0, episode="ep-rome"))  # fmt: skip
    tiny = Seen(_calls_text("get_weather", city="Paris"))
    ladder, store = _ladder(tmp_path, tiny, Seen(""), index)
    convo = [{"role": "user", "content": "list my files"}, {"role": "assistant", "content": "<tool_call>[]</tool_call>"},
             {"role": "user", "content": "weather in Paris please"}]  # fmt: skip
    step = Step("ask", ToolCalls(TOOLS, allow_no_call=True), policy=Policy(examples_k=2, memo=False))
    res = ladder.run(step, convo)
    shown = tiny.calls[0].messages
    assert shown[:2] == convo[:2] and shown[-1] == convo[-1]
    assert [e["id"] for e in res.attempts[0].shaping["examples"]] == ["k1"]
    assert [m.get("content") for m in shown[2:-1]] == [
        "weather in Rome please",
        "",
        "sunny",
        "<tool_call>[]</tool_call>",
    ]
    store.close()
    index.close()
