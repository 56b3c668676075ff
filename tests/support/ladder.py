"""A three-rung fleet (two edge, one cloud) and scripted generations for the ladder's policy tests."""

from __future__ import annotations

from modelladder.backends.base import Generation
from modelladder.fleet import parse_fleet

FLEET = parse_fleet(
    {
        "rung": [
            {
                "name": "tiny",
                "backend": "llamacpp",
                "path": "x.gguf",
                "params": 100,
                "placement": "edge",
                "price_per_second": 0.001,
            },
            {
                "name": "small",
                "backend": "llamacpp",
                "path": "y.gguf",
                "params": 200,
                "placement": "edge",
                "price_per_second": 0.002,
            },
            {
                "name": "big",
                "backend": "openai",
                "url": "http://127.0.0.1:9/v1",
                "params": 10_000,
                "placement": "cloud",
                "price_in_per_m": 1.0,
                "price_out_per_m": 4.0,
            },
        ]
    }
)


def gen(
    text: str, logprobs: list[float] | None = None, finish: str = "stop", latency: float = 0.1
) -> Generation:
    lps = logprobs if logprobs is not None else [-0.01] * 3
    return Generation(
        text=text,
        prompt_tokens=10,
        completion_tokens=len(lps),
        latency_s=latency,
        finish_reason=finish,
        token_logprobs=lps,
        free=[True] * len(lps),
    )
