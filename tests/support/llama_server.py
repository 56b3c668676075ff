"""llama-cpp-python's own OpenAI-compatible server (``python -m llama_cpp.server``) as a
subprocess on loopback: started, waited for, always stopped. Shared by the fixture that serves
the bundled model and the test that serves an exported specialist."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

__all__ = ["running_llama_server"]


@contextlib.contextmanager
def running_llama_server(cmd: list[str], base: str, log: Path, start_s: float = 120) -> Iterator[str]:
    """Run ``cmd`` (output to ``log``) until ``base``/models answers, yield ``base``, stop it."""
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    try:
        deadline = time.monotonic() + start_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited early:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"llama_cpp.server did not start in {start_s:.0f} s:\n{log.read_text()[-2000:]}"
                )
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
