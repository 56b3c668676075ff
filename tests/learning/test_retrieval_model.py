"""A real SmolLM2-135M run whose answer turns from wrong to right with one retrieved example.

Measured on 2026-12-01 (AMD EPYC build): asked "What's the temperature in Tokyo in
fahrenheit?" with the demo's three tools, the model calls ``convert_currency`` (the word
"fahrenheit" reads like a unit conversion to it); shown one verified answer of a similar
request as a prior turn, it calls ``get_weather(city="Tokyo", unit="fahrenheit")``. The same
probe also found the other direction, kept in ``docs/benchmarks_retrieval.md``: "How much is
20 dollars in euros?" was right zero-shot and copied the example's currency order when shown
"75 pounds in dollars".
"""

from __future__ import annotations

import pytest

from modelladder.contracts import ToolCalls
from modelladder.contracts.tools import render_calls
from modelladder.demo.scenario import TOOLS
from modelladder.fleet import parse_fleet
from modelladder.fleet_types import Policy
from modelladder.ladder import Ladder, Resolved, Step
from modelladder.learning import EdgeShaper, Example, ExampleIndex
from modelladder.learning.example_query import input_digest, step_query
from modelladder.traces import TraceStore
from tests.support.models import SMOL

pytestmark = pytest.mark.model

QUESTION = "What's the temperature in Tokyo in fahrenheit?"
RIGHT = {"name": "get_weather", "arguments": {"city": "Tokyo", "unit": "fahrenheit"}}


def test_one_retrieved_example_turns_a_wrong_call_right(tmp_path):
    index = ExampleIndex(tmp_path / "examples.sqlite")
    seen = [{"role": "user", "content": "What's the temperature in Berlin in fahrenheit?"}]
    answer = [{"name": "get_weather", "arguments": {"city": "Berlin", "unit": "fahrenheit"}}]
    index.add(Example(id="run-berlin", key="ask", query=step_query(seen), digest=input_digest(seen), messages=seen,
                      value=answer, text=render_calls(answer), source="checker", created_at=0.0))  # fmt: skip
    store = TraceStore(tmp_path / "traces.sqlite")
    ladder = Ladder(parse_fleet({"rung": [dict(SMOL)]}), store=store, shaper=EdgeShaper(index))
    step = Step("ask", ToolCalls(TOOLS))
    msgs = [{"role": "user", "content": QUESTION}]

    zero = ladder.run(step, msgs, policy=Policy(memo=False))
    assert isinstance(zero, Resolved)
    assert zero.value != [RIGHT], "SmolLM2 answered right zero-shot: this build no longer shows the effect"

    one = ladder.run(step, msgs, policy=Policy(examples_k=1, memo=False))
    assert isinstance(one, Resolved) and one.value == [RIGHT]
    assert [e["id"] for e in one.attempts[0].shaping["examples"]] == ["run-berlin"]
    # the trace keeps the request as sent, and says which example the model saw
    stored = store.get_run(one.run_id)
    assert stored.messages == msgs and stored.attempts[0].shaping["examples"][0]["id"] == "run-berlin"
    store.close()
    index.close()
