"""Load: 200 requests from 16 concurrent clients against the embedded SmolLM2 behind the
gateway. Every request gets a valid answer or a 429 with ``Retry-After`` (never a hang, never
a 5xx), and the trace store holds exactly one run per answered request."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import openai
import pytest
from openai import OpenAI

from modelladder.fleet import Fleet
from modelladder.traces import TraceStore
from tests.support.gateway import WEATHER, gateway

pytestmark = [pytest.mark.model, pytest.mark.server]

N_REQUESTS, N_CLIENTS = 200, 16


def test_200_requests_from_16_clients(smol_fleet: Fleet, tmp_path: Any) -> None:
    store = TraceStore(tmp_path / "traces.sqlite")
    outcomes: Counter[str] = Counter()
    answered_ids: list[str] = []
    problems: list[str] = []
    lock = threading.Lock()
    next_index = iter(range(N_REQUESTS))

    def one(client: OpenAI, i: int) -> None:
        kwargs: dict[str, Any] = {"model": "ladder", "max_tokens": 6}
        if i % 4 == 3:  # a quarter are tool calls
            kwargs.update(tools=[WEATHER], tool_choice="required", max_tokens=64,
                          messages=[{"role": "user", "content": f"Weather in city number {i}?"}])  # fmt: skip
        else:
            kwargs["messages"] = [{"role": "user", "content": f"Say a word about the number {i}."}]
        try:
            r = client.chat.completions.create(**kwargs)
        except openai.RateLimitError as exc:
            retry_after = int(exc.response.headers.get("retry-after", "0"))
            with lock:
                outcomes["429"] += 1
                if retry_after < 1:
                    problems.append(f"#{i}: 429 without Retry-After")
            time.sleep(min(retry_after, 0.5))  # a polite client backs off before its next request
            return
        except openai.APIError as exc:
            with lock:
                outcomes["other"] += 1
                problems.append(f"#{i}: {type(exc).__name__}: {exc}")
            return
        msg = r.choices[0].message
        if "tools" in kwargs:
            valid = bool(msg.tool_calls) and all(
                c.function.name == "get_weather"
                and isinstance(json.loads(c.function.arguments).get("city"), str)
                for c in msg.tool_calls
            )
        else:
            valid = bool(msg.content) and r.choices[0].finish_reason in ("stop", "length")
        with lock:
            outcomes["200"] += 1
            answered_ids.append(r.id.removeprefix("chatcmpl-"))
            if not valid:
                problems.append(f"#{i}: invalid answer {r.model_dump_json()[:300]}")

    def worker() -> None:
        client = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            one(client, i)

    with gateway(smol_fleet, store, preload=True, max_waiting=4) as srv:
        base = srv.base_url
        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(N_CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
        elapsed = time.perf_counter() - t0
        assert not any(t.is_alive() for t in threads), "a client hung"
    print(f"\nload: {dict(outcomes)} in {elapsed:.1f}s")
    assert not problems, problems[:5]
    assert outcomes["200"] + outcomes["429"] == N_REQUESTS and outcomes["200"] > 0
    assert store.count_runs() == outcomes["200"] == len(set(answered_ids))
    for run_id in answered_ids[:: max(1, len(answered_ids) // 10)]:
        assert store.get_run(run_id).outcome == "resolved"
