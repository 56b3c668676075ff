"""Time to first byte of a streamed answer through the gateway, on the bundled models.

Why: a person watching an agent sees nothing until the first chunk. Before live streaming
the gateway validated the whole answer, then replayed it as SSE, so the first content chunk
came when the answer was complete; now free text that no later check can reject
(``Plan.streams_live``) goes out as it is decoded.

The gateway runs in-process on loopback (the default fleet, a throwaway trace store); each
request streams a free-text answer and records when the first content chunk arrived and
when ``[DONE]`` did. Run it on the code before and after to compare:

    .venv/bin/python benchmarks/stream_ttfb.py --n 5
    PYTHONPATH=/tmp/before/src .venv/bin/python benchmarks/stream_ttfb.py --n 5   # an older checkout
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import httpx

PROMPTS = [
    "Tell me a short story about a cat.",
    "Explain what a rainbow is.",
    "Describe the city of Paris in a few sentences.",
]


def one(base: str, prompt: str, max_tokens: int) -> tuple[float, float, int, str]:
    body = {"model": "ladder", "stream": True, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": prompt}]}  # fmt: skip
    t0 = time.perf_counter()
    first = None
    chunks = 0
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=600) as resp:
        resp.raise_for_status()
        mode = resp.headers.get("x-modelladder-streamed", "buffered")
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"]
            if delta and delta[0]["delta"].get("content"):
                chunks += 1
                first = first if first is not None else time.perf_counter() - t0
    return first or float("nan"), time.perf_counter() - t0, chunks, mode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3, help="requests per prompt")
    ap.add_argument("--max-tokens", type=int, default=120)
    args = ap.parse_args()

    from modelladder.gateway import GatewayConfig, create_app
    from modelladder.gateway.server import BackgroundServer
    from modelladder.traces import TraceStore

    os.environ.pop("MODELLADDER_FLEET", None)
    with tempfile.TemporaryDirectory() as tmp:
        store = TraceStore(os.path.join(tmp, "traces.sqlite"))
        app = create_app(store=store, config=GatewayConfig(api_keys=(), preload=True))
        with BackgroundServer(app) as srv:
            one(srv.base_url, "hi", 8)  # warm-up: loads the model, fills the prompt cache
            rows = [one(srv.base_url, p, args.max_tokens) for _ in range(args.n) for p in PROMPTS]
        store.close()
    ttfb = [r[0] for r in rows]
    total = [r[1] for r in rows]
    print(f"mode: {rows[0][3]}; {len(rows)} requests, max_tokens {args.max_tokens}")
    print(f"time to first content chunk: p50 {statistics.median(ttfb):.3f}s  max {max(ttfb):.3f}s")
    print(f"time to [DONE]:              p50 {statistics.median(total):.3f}s  max {max(total):.3f}s")
    print(f"content chunks per answer:   p50 {statistics.median(r[2] for r in rows):.0f}")


if __name__ == "__main__":
    main()
