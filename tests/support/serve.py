"""``modelladder serve`` as a real child process: for tests that kill it, starve its disk or
read its logs. Rungs are cloud rungs against :mod:`tests.support.upstream`, so no model loads
and a start takes about a second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.models import free_port

__all__ = ["GatewayProcess", "Zygote", "write_fleet"]


def write_fleet(path: Path, base_url: str, steady_key_env: str | None = None) -> Path:
    """Two cloud rungs on the loopback upstream: ``flaky`` (params 1) and ``steady`` (params 2)."""
    key = f'api_key_env = "{steady_key_env}"\n' if steady_key_env else ""
    path.write_text(
        "".join(
            f'[[rung]]\nname = "{name}"\nbackend = "openai"\nurl = "{base_url}"\nmodel = "{name}"\n'
            f'params = {i + 1}\nplacement = "cloud"\ntimeout_s = 2\n{key}\n'
            for i, name in enumerate(("flaky", "steady"))
        )
    )
    return path


class Zygote:
    """:mod:`tests.support.zygote`, running: forks pre-imported ``modelladder serve`` children."""

    def __init__(self, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env={**os.environ, **(env or {})})  # fmt: skip
        assert self._read() == "ready"

    def _read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().decode().strip()

    def _send(self, line: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()
        return self._read()

    def spawn(self, log: Path, args: list[str]) -> int:
        return int(self._send(" ".join(["start", str(log), *args])))

    def wait(self, pid: int) -> int:
        return int(self._send(f"wait {pid}"))

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


class GatewayProcess:
    """One gateway child; :meth:`start` returns once ``/healthz`` answers. ``launcher``:
    ``"serve"`` (the CLI) or ``"uvicorn"`` (``uvicorn --factory modelladder.gateway:create_app``,
    configured by the environment, as docs/README.md offers any ASGI server); the store is
    ``db``, whose directory is ``$MODELLADDER_HOME`` for the latter, so name it traces.sqlite."""

    def __init__(self, fleet: Path, db: Path, log: Path, *, port: int | None = None,
                 env: dict[str, str] | None = None, args: tuple[str, ...] = ()):  # fmt: skip
        self.fleet, self.db, self.log = fleet, db, log
        self.port = port or free_port()
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.forked: tuple[Zygote, int] | None = None  # started by a zygote: (it, the child's pid)
        self.ready_s = 0.0  # how long the last start took, spawn to first healthz answer

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve_args(self) -> list[str]:
        return ["serve", "--fleet", str(self.fleet), "--db", str(self.db), "--port", str(self.port), "--no-preload",
                "--log-level", "warning", *self.args]  # fmt: skip

    def start(self, timeout_s: float = 30.0, preexec: Any = None, launcher: str = "serve",
              zygote: Zygote | None = None) -> GatewayProcess:  # fmt: skip
        """``zygote``: fork the CLI from it instead of starting a cold process."""
        env = self.env
        t0 = time.monotonic()
        if zygote is not None:
            self.forked = (zygote, zygote.spawn(self.log, self._serve_args()))
            self.proc = None
            return self._ready(t0, timeout_s)
        if launcher == "serve":
            cmd = [sys.executable, "-c", "from modelladder.cli import main; main()", *self._serve_args()]
        elif launcher == "uvicorn":
            if self.db.name != "traces.sqlite":
                raise ValueError("with launcher='uvicorn' the store is $MODELLADDER_HOME/traces.sqlite")
            cmd = [sys.executable, "-m", "uvicorn", "--factory", "modelladder.gateway:create_app",
                   "--port", str(self.port), "--log-level", "warning"]  # fmt: skip
            env = {**env, "MODELLADDER_FLEET": str(self.fleet), "MODELLADDER_HOME": str(self.db.parent)}
        else:
            raise ValueError(f"unknown launcher {launcher!r}")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec
            )
        return self._ready(t0, timeout_s)

    def _ready(self, t0: float, timeout_s: float) -> GatewayProcess:
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"the gateway exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(self.base_url + "/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > timeout_s:
                self.kill()
                raise RuntimeError(
                    f"the gateway did not answer in {timeout_s}s:\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(0.02)
        self.ready_s = time.monotonic() - t0
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, no buffer is flushed."""
        if self.forked is not None:
            zygote, pid = self.forked
            os.kill(pid, signal.SIGKILL)
            status = zygote.wait(pid)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
            self.forked = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.forked is not None:
            zygote, pid = self.forked
            os.kill(pid, signal.SIGTERM)
            zygote.wait(pid)
            self.forked = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
