"""A real ``modelladder serve`` (the CLI, in a subprocess, on 127.0.0.1) on the default fleet,
exporting its spans to an OTLP/HTTP receiver on loopback: module-scoped fixtures for framework
tests outside tests/gateway/test_frameworks.py (a test module must not import another, see
tests/test_layout.py). Import the fixtures by name into the test module."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelladder.traces.records import RunRecord
from tests.support.models import free_port
from tests.support.otlp import OtlpReceiver, otlp_receiver

__all__ = ["check_spans", "otlp", "runs_total", "serve_home", "server"]


@pytest.fixture(scope="module")
def serve_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MODELLADDER_HOME of the server: its trace store is ``traces.sqlite`` there."""
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    """Where the server sends its spans."""
    with otlp_receiver() as rec:
        yield rec


@pytest.fixture(scope="module")
def server(serve_home: Path, otlp: OtlpReceiver) -> Iterator[str]:
    """The server's base URL (``http://127.0.0.1:PORT``), once /healthz answers."""
    port = free_port()
    exe = Path(sys.executable).with_name("modelladder")
    env = {**os.environ, "MODELLADDER_HOME": str(serve_home), "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
           "OTEL_BSP_SCHEDULE_DELAY": "200"}  # fmt: skip
    env.pop("MODELLADDER_FLEET", None)
    log_path = serve_home / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--log-level", "warning"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 300
            while True:
                try:
                    if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"modelladder serve did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.5)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def runs_total(base: str) -> int:
    """How many runs the server has counted (``modelladder_runs_total``, every label)."""
    text = httpx.get(base + "/metrics").text
    return int(sum(float(v) for v in re.findall(r"^modelladder_runs_total\{[^}]*\} (\S+)$", text, re.M)))


def check_spans(runs: list[RunRecord], receiver: OtlpReceiver) -> None:
    """Each stored run is one SERVER span with one child per recorded attempt, in order: the
    same rung, the same prompt tokens, in-process (INTERNAL, llama.cpp), the same outcome."""
    ids = {r.run_id for r in runs}
    spans = receiver.wait_until(lambda got: ids <= {s.attributes.get("modelladder.run_id") for s in got if s.kind == 2},
                                f"a span for each of {len(ids)} runs")  # fmt: skip
    for run in runs:
        (root,) = [s for s in spans if s.kind == 2 and s.attributes["modelladder.run_id"] == run.run_id]
        children = sorted((s for s in spans if s.parent_span_id == root.span_id),
                          key=lambda s: s.attributes["modelladder.attempt.index"])  # fmt: skip
        assert [c.attributes["modelladder.rung"] for c in children] == [a.rung for a in run.attempts]
        assert [c.attributes["gen_ai.usage.input_tokens"] for c in children] == [
            a.prompt_tokens for a in run.attempts
        ]
        assert all(c.kind == 1 and c.attributes["gen_ai.provider.name"] == "llama.cpp" for c in children)
        assert root.attributes["modelladder.outcome"] == run.outcome
