"""A small scripted world for the distillation tests: one tool-calling step, a fake edge
rung that fails on some inputs, a fake big rung that always answers right, and a trace
store filled by the real :class:`~modelladder.ladder.Ladder`. No model is needed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from modelladder import ScriptedBackend
from modelladder.backends import BackendError, Call, Generation
from modelladder.contracts import ToolCalls
from modelladder.contracts.tools import render_calls
from modelladder.fleet import parse_fleet
from modelladder.ladder import Ladder, Step
from modelladder.traces import TraceStore

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "send_email",
            "description": "Send an e-mail.",
            "parameters": {
                "type": "object",
                "properties": {"to": {"type": "string"}, "body": {"type": "string"}},
                "required": ["to", "body"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order by its id.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
]
STEP = Step("route", ToolCalls(TOOLS))
CITIES = [
    "Paris",
    "Lima",
    "Oslo",
    "Cairo",
    "Quito",
    "Hanoi",
    "Dakar",
    "Perth",
    "Tokyo",
    "Austin",
    "Bergen",
    "Porto",
    "Kyoto",
    "Accra",
    "Tunis",
    "Sofia",
    "Riga",
    "Minsk",
    "Lagos",
    "Seoul",
    "Delhi",
    "Dubai",
    "Milan",
    "Turin",
    "Genoa",
    "Bonn",
    "Kiel",
    "Graz",
    "Bern",
    "Nice",
    "Lyon",
    "Lille",
    "Brest",
    "Cork",
]
TEMPLATES = [
    "What is the weather like in {c} right now?",
    "Tell me the current temperature in {c}, please.",
    "Is it raining in {c} at the moment, do you know?",
]

FLEET_DATA: dict[str, Any] = {
    "policy": {"min_mean_logprob": -0.6},
    "rung": [
        {
            "name": "small",
            "backend": "llamacpp",
            "path": "small.gguf",
            "params": 100,
            "placement": "edge",
            "price_per_second": 0.001,
        },
        {
            "name": "big",
            "backend": "openai",
            "url": "http://127.0.0.1:9/v1",
            "params": 10_000,
            "placement": "cloud",
            "price_in_per_m": 2.0,
            "price_out_per_m": 8.0,
        },
    ],
}
FLEET_TOML = """\
# test fleet
[policy]
min_mean_logprob = -0.6

[[rung]]
name = "small"
backend = "llamacpp"
path = "small.gguf"
params = 100
placement = "edge"
price_per_second = 0.001

[[rung]]
name = "big"
backend = "openai"
url = "http://127.0.0.1:9/v1"
params = 10_000
placement = "cloud"
price_in_per_m = 2.0
price_out_per_m = 8.0
"""


def questions(n: int, offset: int = 0) -> list[str]:
    out = []
    for i in range(offset, offset + n):
        c = CITIES[i % len(CITIES)]
        t = TEMPLATES[(i // len(CITIES)) % len(TEMPLATES)]
        out.append(t.format(c=c) + ("" if i < len(CITIES) * len(TEMPLATES) else f" (request {i})"))
    return out


def right_answer(question: str) -> str:
    city = next((c for c in CITIES if c in question), "Paris")
    return render_calls([{"name": "get_weather", "arguments": {"city": city}}])


def small_fails(question: str) -> bool:
    """About half the questions defeat the small model (deterministic)."""
    return hashlib.sha256(question.encode()).digest()[0] % 2 == 0


def scripted(
    name: str, answer: Callable[[str], str | None], mean_logprob: float = -0.1, latency_s: float = 0.05
) -> ScriptedBackend:
    """A rung answering from a function of the last user message (``None``: a timeout)."""

    def handler(call: Call) -> Generation:
        text = answer(call.last_content)
        if text is None:
            raise BackendError("timeout", f"{name}: scripted timeout")
        return Generation(
            text=text,
            prompt_tokens=60,
            completion_tokens=12,
            latency_s=latency_s,
            token_logprobs=[mean_logprob, mean_logprob],
            free=[True, True],
        )

    return ScriptedBackend(name, handler)


def small_backend() -> ScriptedBackend:
    return scripted("small", lambda q: "not a tool call" if small_fails(q) else right_answer(q))


def big_backend() -> ScriptedBackend:
    return scripted("big", right_answer, latency_s=1.0)


def record(
    store: TraceStore,
    qs: Iterable[str],
    step: Step = STEP,
    tags: Mapping[str, str] | None = None,
    backends: dict[str, Any] | None = None,
) -> list[Any]:
    fleet = parse_fleet(FLEET_DATA, "<test fleet>")
    ladder = Ladder(fleet, store=store, backends=backends or {"small": small_backend(), "big": big_backend()})
    return [
        ladder.run(step, [{"role": "user", "content": q}], tags=dict(tags or {"app": "test"})) for q in qs
    ]


def teacher_ids(results: list[Any]) -> set[str]:
    return {r.run_id for r in results if r.outcome == "resolved" and r.attempts[-1].rung == "big"}


class FixedSource:
    """A step source for tests: one step; correctness is agreement with the teacher (or a checker)."""

    spec = "tests.support.distill:STEP"
    reference_name = "test"

    def __init__(self, step: Step = STEP, checker: bool = False):
        self.step, self.checker = step, checker

    def step_for(self, step: str, messages: list[dict[str, Any]], tags: Mapping[str, str]) -> Step:
        return Step(step, self.step.contract, self.step.policy, self.step.system, self.step.max_tokens)

    def has_checker(self) -> bool:
        return self.checker

    def correct(self, tags: Mapping[str, str], value: Any, teacher_value: Any) -> bool:
        if self.checker:
            q = value and value[0]["arguments"].get("city")
            return bool(q) and q == tags.get("city")
        from modelladder.distill.steps import canonical

        return (
            value is not None and teacher_value is not None and canonical(value) == canonical(teacher_value)
        )


def write_fleet(tmp: Path, text: str = FLEET_TOML) -> Path:
    p = tmp / "fleet.toml"
    p.write_text(text)
    return p
