"""Scripted rungs for the learning tests: fixed answers with fixed log-probabilities, and a
rung that can be held back (to prove that shadow checks never make the caller wait)."""

from __future__ import annotations

import threading
import time

import numpy as np

from modelladder.backends.base import Generation
from modelladder.backends.scripted import Call, ScriptedBackend
from modelladder.contracts import Choice, ToolCalls
from modelladder.contracts.base import Verdict
from modelladder.ladder.outcome import Attempt, Confidence, Resolved
from modelladder.traces import TraceStore
from tests.support.contracts import WEATHER


def fixed(name: str, text: str, logprobs: list[float], latency_s: float = 0.01) -> ScriptedBackend:
    """A rung that always answers ``text``, every token free with the given log-probabilities."""

    def handler(call: Call) -> Generation:
        return Generation(text, 10, len(logprobs), latency_s, token_logprobs=list(logprobs),
                          free=[True] * len(logprobs))  # fmt: skip

    return ScriptedBackend(name, handler)


def held(name: str, text: str, delay_s: float = 0.0) -> tuple[ScriptedBackend, threading.Event]:
    """A rung that answers only once the returned event is set (it starts set), then after ``delay_s``."""
    release = threading.Event()
    release.set()

    def handler(call: Call) -> Generation:
        release.wait(10)
        time.sleep(delay_s)
        return Generation(text, 10, 2, delay_s, token_logprobs=[-0.01], free=[True])

    return ScriptedBackend(name, handler), release


CONTRACT = Choice(["billing", "shipping", "other"])
DIGEST = CONTRACT.digest()


def edge_attempt(conf: float, index: int = 0, accepted: bool = True) -> Attempt:
    return Attempt(index=index, rung="small", placement="edge", text="billing",
                   verdict=Verdict.passed("billing"), accepted=accepted, completion_tokens=2,
                   confidence=Confidence(conf, conf - 0.2, 2, conf - 0.15, conf - 0.1, conf))  # fmt: skip


def fill(
    store: TraceStore, n: int, rng: np.random.Generator, prefix: str = "r", wrong_rate=None
) -> list[str]:
    """Runs whose edge answer is wrong with probability rising as its confidence falls
    (or with a fixed ``wrong_rate``), each labelled by a checker."""
    ids = []
    for i in range(n):
        conf = float(rng.uniform(-3.0, 0.0))
        p_wrong = wrong_rate if wrong_rate is not None else max(0.0, (-conf - 0.8) / 2.2)
        rid = f"{prefix}{i}"
        store.record(Resolved(run_id=rid, step="route", contract_digest=DIGEST, messages=[],
                              attempts=[edge_attempt(conf)], contract={"kind": "choice", "spec": CONTRACT.spec()}))  # fmt: skip
        store.add_label(
            rid, attempt_idx=0, kind="correct", value=float(rng.uniform() >= p_wrong), source="checker"
        )
        ids.append(rid)
    return ids


# -- the ex-ante skip: tool steps whose edge succeeds by where the conversation stands ----------

TOOLS = ToolCalls([WEATHER], answer=True)
SPEC = {"kind": TOOLS.kind, "spec": TOOLS.spec()}
USER = [{"role": "system", "content": "You help."}, {"role": "user", "content": "Weather in Paris?"}]
AFTER_TOOL = [
    *USER,
    {"role": "assistant", "content": None,
     "tool_calls": [{"id": "c1", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21 C"},
]  # fmt: skip
P_OK = {"user": 0.03, "tool": 0.7}  # the simulated edge: right after a tool result, rarely at a turn start


def request_for(rng: np.random.Generator) -> tuple[str, list[dict]]:
    where = "user" if rng.uniform() < 0.5 else "tool"
    return where, [dict(m) for m in (USER if where == "user" else AFTER_TOOL)]


def fill_agent(store: TraceStore, n: int, rng: np.random.Generator, prefix: str = "s") -> None:
    """Runs of step ``agent`` whose edge attempt succeeds with ``P_OK`` by turn position; half of
    the failures are contract failures, half wrong answers labelled by a checker."""
    for i in range(n):
        where, msgs = request_for(rng)
        ok = rng.uniform() < P_OK[where]
        contract_fail = not ok and rng.uniform() < 0.5
        a = Attempt(index=0, rung="small", placement="edge", text="x", completion_tokens=3,
                    verdict=Verdict.failed("bad_json") if contract_fail else Verdict.passed([]),
                    accepted=not contract_fail)  # fmt: skip
        rid = f"{prefix}{i}"
        store.record(Resolved(run_id=rid, step="agent", contract_digest=TOOLS.digest(), messages=msgs,
                              attempts=[a], contract=SPEC))  # fmt: skip
        if not contract_fail:
            store.add_label(rid, attempt_idx=0, kind="correct", value=float(ok), source="checker")
