"""The Vercel AI SDK (Node.js) against a real ``modelladder serve`` on the bundled models.

``tests/node/agent.mjs`` is a small agent on ``ai`` with ``@ai-sdk/openai-compatible`` (the
versions pinned in tests/node/package-lock.json; ``npm ci --prefix tests/node`` installs them):
``generateText`` / ``streamText`` with two tools that really execute in Node (``get_weather``,
``add``) and ``stopWhen: stepCountIs(5)``. This test starts the same server as
tests/gateway/test_frameworks.py (tests/support/framework_server.py: the CLI in a subprocess on
127.0.0.1, the default fleet, spans exported to an OTLP receiver on loopback), runs the agent in a ``node``
subprocess and checks what the hops left: one trace-store run per HTTP request (by the
``x-modelladder-run-id`` header the SDK got back), the tools offered, every tool result in a
later hop equal to what the Node tool returned, the accepted answer equal to what the SDK
received (streamed or not), and a run span per hop with one child per attempt. Whether the
final answer is *right* is measured and printed, as in test_frameworks.py: docs/frameworks.md.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from modelladder.traces import TraceStore
from modelladder.traces.records import RunRecord
from tests.support.framework_server import check_spans, runs_total
from tests.support.otlp import OtlpReceiver

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NODE = shutil.which("node")

# skipped before the server starts (a module-scoped fixture would start first)
pytestmark = [
    pytest.mark.model,
    pytest.mark.server,
    pytest.mark.skipif(NODE is None, reason="node is not on PATH (the Vercel AI SDK test needs Node.js >= 20)"),
    pytest.mark.skipif(not (NODE_DIR / "node_modules" / "ai").is_dir(),
                       reason="tests/node/node_modules is missing: run `npm ci --prefix tests/node`"),
]  # fmt: skip

# (prompt, what a right answer carries, how the SDK runs it); kept small: a hop takes seconds
PROMPTS = [
    ("What's the weather in Paris?", "22", "generate"),
    ("What is 12 plus 30?", "42", "generate"),
    ("What's the weather in Tokyo?", "22", "stream"),
]


def _wire(output: Any) -> str:
    """A tool's return value as the SDK sends it back: a string as is, anything else as JSON."""
    return output if isinstance(output, str) else json.dumps(output, separators=(",", ":"))


def _check_hops(res: dict[str, Any], runs: dict[str, RunRecord]) -> None:
    """One prompt's hops against the runs they left, request by request."""
    prompt, steps, reqs = res["prompt"], res["steps"], res["requests"]
    assert len(reqs) == len(steps), (prompt, reqs, steps)  # one request per step: no retries
    returned = {r["id"]: r["output"] for s in steps for r in s["tool_results"]}
    # every execution the tools recorded is a result the SDK saw, and the other way round
    assert sorted(json.dumps(e, sort_keys=True) for e in res["executed"]) == sorted(
        json.dumps({"name": r["name"], "input": c["input"], "output": r["output"]}, sort_keys=True)
        for s in steps for c in s["tool_calls"] for r in s["tool_results"] if r["id"] == c["id"]
    ), (prompt, res["executed"])  # fmt: skip
    for k, (req, step) in enumerate(zip(reqs, steps, strict=True)):
        assert req["status"] == 200 and req["run_id"] in runs, (prompt, k, req)
        assert req["ignored"] is None and req["stream"] == (res["mode"] == "stream"), (prompt, k, req)
        if req["stream"]:  # a tool call is buffered, then replayed; a text answer may stream live
            assert step["tool_calls"] == [] or req["streamed"] != "live", (prompt, k, req)
        run = runs[req["run_id"]]
        assert run.tags.get("via") == "gateway" and "ignored" not in run.tags, (prompt, run.tags)
        assert run.outcome == "resolved", (prompt, k, run.outcome)
        offered = {t["name"] for t in run.contract["spec"]["tools"]} if run.contract else set()
        assert offered == {"get_weather", "add"}, (prompt, run.contract)
        # the conversation this hop carried: the calls of the steps before it, each with the
        # result the Node tool returned for it
        sent_calls = [(tc["id"], tc["function"]["name"], json.loads(tc["function"]["arguments"]))
                      for m in run.messages for tc in m.get("tool_calls") or []]  # fmt: skip
        earlier = [(c["id"], c["name"], c["input"]) for s in steps[:k] for c in s["tool_calls"]]
        assert sent_calls == earlier, (prompt, k, sent_calls, earlier)
        results = {m["tool_call_id"]: m["content"] for m in run.messages if m["role"] == "tool"}
        assert results == {i: _wire(returned[i]) for i, _, _ in earlier}, (prompt, k, results)
        # what the gateway accepted is what the SDK got back
        accepted = run.accepted
        assert accepted is not None, (prompt, k, run)
        if step["tool_calls"]:
            assert accepted.value == [
                {"name": c["name"], "arguments": c["input"]} for c in step["tool_calls"]
            ]
        else:
            assert accepted.value == {"answer": step["text"]}, (prompt, k, accepted.value, step)
        # the usage the SDK read (streamed: the include_usage chunk) is the run's, every attempt's
        usage = {"input": sum(a.prompt_tokens for a in run.attempts),
                 "output": sum(a.completion_tokens for a in run.attempts)}  # fmt: skip
        assert step["usage"] == usage, (prompt, k, step["usage"], usage)


def test_vercel_ai_sdk_tool_agent(server: str, serve_home: Path, otlp: OtlpReceiver) -> None:
    assert NODE is not None
    store = TraceStore(serve_home / "traces.sqlite")
    try:
        before_ids = {r.run_id for r in store.list_runs(limit=None)}
        before = runs_total(server)
        spec = [{"prompt": p, "mode": m} for p, _, m in PROMPTS]
        proc = subprocess.run([NODE, str(NODE_DIR / "agent.mjs"), server, json.dumps(spec)],
                              capture_output=True, text=True, timeout=1800)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout)
        new = {r.run_id for r in store.list_runs(limit=None)} - before_ids
        runs = {i: store.get_run(i) for i in new}
    finally:
        store.close()
    print(f"node {out['node']}, {out['versions']}")
    results = out["results"]
    hops_total = sum(len(r["requests"]) for r in results)
    # one stored run per hop, and nothing else ran
    assert runs_total(server) - before == hops_total == len(runs), (hops_total, len(runs))
    assert {q["run_id"] for r in results for q in r["requests"]} == set(runs)
    rows = []
    for res, (prompt, want, mode) in zip(results, PROMPTS, strict=True):
        assert "error" not in res, (prompt, res.get("error"), res["requests"])
        assert res["warnings"] == [], (prompt, res["warnings"])
        steps = res["steps"]
        # it ended: a final text answer within the step limit, with no tool call left open
        assert res["finish_reason"] == "stop" and res["text"].strip(), (prompt, res)
        assert steps[-1]["tool_calls"] == [] and len(steps) <= 5, (prompt, steps)
        assert not any(s["tool_errors"] for s in steps), (prompt, steps)
        if mode == "stream":  # the text arrived in deltas that add up to the final answer
            assert res["text_deltas"] >= 1 and res["streamed_text"] == res["text"], res
        _check_hops(res, runs)
        correct = re.search(rf"(?<![\d.]){want}(?![\d])", res["text"]) is not None
        rows.append((correct, len(steps)))
        calls = [f"{c['name']}({json.dumps(c['input'])})" for s in steps for c in s["tool_calls"]]
        streamed = [q["streamed"] for q in res["requests"]] if mode == "stream" else "-"
        attempts = [[f"{a.rung}:{a.decision or ''}{'' if a.accepted else '!' + str(a.escalation_reason or a.verdict_reason or a.error)}"
                     for a in runs[q["run_id"]].attempts] for q in res["requests"]]  # fmt: skip
        print(f"vercel-ai-{mode}: {prompt!r} -> {res['text'][:80]!r} ({len(steps)} hops, calls {calls}, "
              f"{res.get('text_deltas', '-')} text deltas, x-modelladder-streamed {streamed}, attempts {attempts})")  # fmt: skip
    check_spans(list(runs.values()), otlp)
    correct = sum(c for c, _ in rows)
    print(f"SUMMARY vercel-ai-sdk: ended {len(rows)}/{len(rows)}, correct {correct}/{len(rows)}, "
          f"hops {[h for _, h in rows]}")  # fmt: skip
    print(f"TRACES vercel-ai-sdk: {len(runs)} runs, {sum(len(r.attempts) for r in runs.values())} attempts, "
          f"{sum(len(r['executed']) for r in results)} tool results checked, spans matched")  # fmt: skip
