"""Agent frameworks against a real ``modelladder serve`` on the bundled models.

A real HTTP server on 127.0.0.1 (the CLI, in a subprocess), real clients (the ``openai``
SDK, the OpenAI Agents SDK, pydantic-ai, LangChain, LlamaIndex), the default fleet. The
server exports its spans to a real OTLP/HTTP receiver on loopback, so a framework's test can
check the traces it left both in the trace store and as spans. Each agent gets a
small set of weather and arithmetic prompts and must *end* -- a final answer within the
framework's default turn limit. How many end *correctly* (the answer carries the tool's
result) and in how many hops (chat completions the gateway served) is printed, because on
135M-270M models correctness is a measurement, not a promise; docs/frameworks.md has them.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from modelladder.traces import TraceStore
from modelladder.traces.records import RunRecord
from tests.support.framework_server import check_spans, runs_total
from tests.support.otlp import OtlpReceiver

# The frameworks' own HTTP clients and event loops (the Agents SDK's and pydantic-ai's
# run_sync) leave sockets and async generators for the garbage collector; those
# ResourceWarnings are theirs, not ours, and must not be raised as errors in later tests.
pytestmark = [pytest.mark.model, pytest.mark.server, pytest.mark.filterwarnings("ignore::ResourceWarning")]


@pytest.fixture(autouse=True)
def _collect_the_frameworks_leftovers() -> Iterator[None]:
    """Finalise what a framework left behind while its warnings are still ignored, so the
    unraisable-exception report does not land on whichever test runs next."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


# Kept small on purpose: on a shared 2-core machine a hop on the bundled models takes seconds.
PROMPTS = [
    ("What's the weather in Paris?", "22"),
    ("What is 12 plus 30?", "42"),
]


def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny, 22 degrees C in {city}"


def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


def _tool(fn: Callable[..., Any], props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": fn.__name__, "description": fn.__doc__, "parameters": {
        "type": "object", "properties": props, "required": list(props)}}}  # fmt: skip


TOOLS = [
    _tool(get_weather, {"city": {"type": "string"}}),
    _tool(add, {"a": {"type": "number"}, "b": {"type": "number"}}),
]
RUN = {"get_weather": get_weather, "add": add}


class Answer(BaseModel):
    """A structured final answer: what the agent found."""

    answer: str


_runs = runs_total


def _score(name: str, base: str, agent: Callable[[str], str]) -> list[tuple[bool, int]]:
    """Run ``agent`` on every prompt: (correct, hops) each; an exception fails the test."""
    rows = []
    for prompt, want in PROMPTS:
        before = _runs(base)
        answer = agent(prompt)
        hops = _runs(base) - before
        assert isinstance(answer, str) and answer.strip(), f"{name}: no final answer for {prompt!r}"
        rows.append((re.search(rf"(?<![\d.]){want}(?![\d])", answer) is not None, hops))
        print(f"{name}: {prompt!r} -> {answer[:80]!r} ({hops} hops)")
    correct = sum(c for c, _ in rows)
    print(f"SUMMARY {name}: ended {len(rows)}/{len(rows)}, correct {correct}/{len(rows)}, "
          f"hops {[h for _, h in rows]}")  # fmt: skip
    return rows


def test_openai_sdk_hand_loop(server: str) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=600)

    def agent(prompt: str) -> str:
        messages: list[Any] = [{"role": "user", "content": prompt}]
        for _ in range(10):
            msg = (
                client.chat.completions.create(model="ladder", messages=messages, tools=TOOLS)
                .choices[0]
                .message
            )
            if not msg.tool_calls:
                return msg.content or ""
            messages.append(msg.model_dump(exclude_none=True))
            for tc in msg.tool_calls:
                result = RUN[tc.function.name](**json.loads(tc.function.arguments))
                messages.append({"role": "tool", "tool_call_id": tc.id, "content": str(result)})
        raise AssertionError(f"no final answer in 10 turns for {prompt!r}")

    rows = _score("openai-sdk", server, agent)
    assert all(h <= 10 for _, h in rows)


def _agents_sdk(server: str, output_type: Any) -> Callable[[str], str]:
    agents = pytest.importorskip("agents")
    from openai import AsyncOpenAI

    agents.set_tracing_disabled(True)
    model = agents.OpenAIChatCompletionsModel(
        model="ladder", openai_client=AsyncOpenAI(base_url=server + "/v1", api_key="unused", timeout=600)
    )
    agent = agents.Agent(name="helper", instructions="Answer the user's question; use the tools.", model=model,
                         tools=[agents.function_tool(get_weather), agents.function_tool(add)],
                         output_type=output_type)  # fmt: skip

    def run(prompt: str) -> str:
        out = agents.Runner.run_sync(agent, prompt).final_output  # default max_turns (10)
        return out.answer if isinstance(out, Answer) else str(out)

    return run


def test_openai_agents_sdk_runner_with_a_tool(server: str) -> None:
    _score("agents-sdk", server, _agents_sdk(server, None))


def test_openai_agents_sdk_runner_with_a_tool_and_output_type(server: str) -> None:
    _score("agents-sdk+output_type", server, _agents_sdk(server, Answer))


def _pydantic_ai(server: str, output_type: Any) -> Callable[[str], str]:
    pydantic_ai = pytest.importorskip("pydantic_ai")
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel("ladder", provider=OpenAIProvider(base_url=server + "/v1", api_key="unused"))
    # NativeOutput: structured output as OpenAI serves it (tools + a json_schema response_format).
    # "tool": pydantic-ai's default ToolOutput, tool_choice "required" with a final_result tool;
    # the loop guard rules out a repeated call, so final_result is what is left.
    if output_type == "tool":
        output: Any = Answer
    else:
        output = pydantic_ai.NativeOutput(output_type) if output_type is not None else str
    agent = pydantic_ai.Agent(model, tools=[get_weather, add], output_type=output)

    def run(prompt: str) -> str:
        out = agent.run_sync(prompt).output  # default usage limits
        return out.answer if isinstance(out, Answer) else str(out)

    return run


def test_pydantic_ai_with_a_tool(server: str) -> None:
    _score("pydantic-ai", server, _pydantic_ai(server, None))


def test_pydantic_ai_with_a_tool_and_structured_output(server: str) -> None:
    _score("pydantic-ai+output_type", server, _pydantic_ai(server, Answer))


def test_pydantic_ai_with_a_tool_and_its_default_tool_output(server: str) -> None:
    _score("pydantic-ai+ToolOutput", server, _pydantic_ai(server, "tool"))


def _chat_openai(server: str) -> Any:
    lc = pytest.importorskip("langchain_openai")
    return lc.ChatOpenAI(
        model="ladder", base_url=server + "/v1", api_key="unused", temperature=0, timeout=600
    )


def test_langchain_bind_tools_loop(server: str) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    llm = _chat_openai(server).bind_tools([tool(get_weather), tool(add)])

    def agent(prompt: str) -> str:
        messages: list[Any] = [HumanMessage(prompt)]
        for _ in range(10):
            ai = llm.invoke(messages)
            if not ai.tool_calls:
                return str(ai.content)
            messages.append(ai)
            for tc in ai.tool_calls:
                messages.append(ToolMessage(str(RUN[tc["name"]](**tc["args"])), tool_call_id=tc["id"]))
        raise AssertionError(f"no final answer in 10 turns for {prompt!r}")

    _score("langchain-bind_tools", server, agent)


STRUCTURED = [
    ("Paris is sunny today at 22 degrees.", "Paris"),
    ("Tokyo has rain and 15 degrees.", "Tokyo"),
]


class Weather(BaseModel):
    """The weather a sentence reports."""

    city: str
    temperature_c: float


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_with_structured_output(server: str, method: str) -> None:
    llm = _chat_openai(server).with_structured_output(Weather, method=method)
    correct = 0
    for text, city in STRUCTURED:
        before = _runs(server)
        out = llm.invoke(f"Extract the city and temperature: {text}")
        assert isinstance(out, Weather)
        correct += out.city == city
        print(f"langchain-{method}: {text!r} -> {out!r} ({_runs(server) - before} hops)")
    print(f"SUMMARY langchain-with_structured_output({method}): ended {len(STRUCTURED)}/{len(STRUCTURED)}, "
          f"correct {correct}/{len(STRUCTURED)}")  # fmt: skip


def _llamaindex_llm(server: str) -> Any:
    pytest.importorskip("llama_index.llms.openai_like")
    from llama_index.llms.openai_like import OpenAILike

    # OpenAILike assumes a completion model without tools unless told; the gateway is a chat
    # endpoint that takes tools
    return OpenAILike(model="ladder", api_base=server + "/v1", api_key="unused", is_chat_model=True,
                      is_function_calling_model=True, timeout=600, max_retries=0)  # fmt: skip


def _llamaindex_tools() -> list[Any]:
    from llama_index.core.tools import FunctionTool

    return [FunctionTool.from_defaults(get_weather), FunctionTool.from_defaults(add)]


def _run_ids(store: TraceStore) -> set[str]:
    return {r.run_id for r in store.list_runs(limit=None)}


def _check_traces(name: str, runs: list[RunRecord], otlp: OtlpReceiver, tool_results: bool = True) -> None:
    """What the framework's hops left: one trace-store run each; every tool result the framework
    sent back is exactly what the real tool returns for the call before it; each run is a span
    with one child per recorded attempt, on the bundled (llama.cpp, in-process) rungs."""
    results = 0
    for run in runs:
        assert run.tags.get("via") == "gateway" and "ignored" not in run.tags, (name, run.tags)
        offered = {t["name"] for t in run.contract["spec"]["tools"]} if run.contract else set()
        assert offered == {"get_weather", "add"}, (name, run.contract)
        asked = {}
        for m in run.messages:
            for tc in m.get("tool_calls") or []:
                asked[tc["id"]] = (tc["function"]["name"], json.loads(tc["function"]["arguments"]))
            if m["role"] == "tool":
                tool, args = asked[m["tool_call_id"]]
                assert m["content"] == str(RUN[tool](**args)), (name, m, tool, args)
                results += 1
    assert results >= 1 or not tool_results, f"{name}: no hop carried a tool result: the tools never ran"
    check_spans(runs, otlp)
    print(f"TRACES {name}: {len(runs)} runs, {sum(len(r.attempts) for r in runs)} attempts, "
          f"{results} tool results checked, spans matched")  # fmt: skip


# llama-index-workflows collects a workflow's steps with inspect.getmembers, which reads the
# agent's deprecated pydantic attributes (`__fields__`, `model_computed_fields`, ...): its own warnings
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning")
def test_llamaindex_function_agent(server: str, serve_home: Path, otlp: OtlpReceiver) -> None:
    llm = _llamaindex_llm(server)
    from llama_index.core.agent.workflow import FunctionAgent

    agent = FunctionAgent(tools=_llamaindex_tools(), llm=llm,
                          system_prompt="Answer the user's question; use the tools.")  # fmt: skip

    async def ask(prompt: str) -> Any:
        return await agent.run(user_msg=prompt)  # default max_iterations (20); it starts in a loop

    store = TraceStore(serve_home / "traces.sqlite")
    # one event loop for every prompt: the LLM's async HTTP client is bound to the first
    with asyncio.Runner() as loop:
        try:
            before = _run_ids(store)
            rows = _score("llamaindex-FunctionAgent", server, lambda p: str(loop.run(ask(p))))
            runs = [store.get_run(i) for i in _run_ids(store) - before]
        finally:
            store.close()
    assert len(runs) == sum(h for _, h in rows)  # one recorded run per hop
    _check_traces("llamaindex-FunctionAgent", runs, otlp)


def test_llamaindex_predict_and_call(server: str, serve_home: Path, otlp: OtlpReceiver) -> None:
    """One hop: the model picks a tool and LlamaIndex runs it; its answer is the tool's output."""
    llm = _llamaindex_llm(server)
    tools = _llamaindex_tools()
    answers: dict[str, str] = {}

    def run(prompt: str) -> str:
        answers[prompt] = str(llm.predict_and_call(tools, prompt))
        return answers[prompt]

    store = TraceStore(serve_home / "traces.sqlite")
    try:
        before = _run_ids(store)
        rows = _score("llamaindex-predict_and_call", server, run)
        runs = [store.get_run(i) for i in _run_ids(store) - before]
    finally:
        store.close()
    assert [h for _, h in rows] == [1, 1] and len(runs) == 2
    for run_ in runs:
        prompt = next(m["content"] for m in run_.messages if m["role"] == "user")
        accepted = run_.accepted
        assert accepted is not None, run_
        if isinstance(accepted.value, list):  # the model called: the answer is what the tool returned
            (call,) = accepted.value
            assert answers[prompt] == str(RUN[call["name"]](**call["arguments"]))
    _check_traces("llamaindex-predict_and_call", runs, otlp, tool_results=False)
