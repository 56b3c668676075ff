"""Shared fixtures. Real models, a real OpenAI-compatible server, real SQLite files and a real
PostgreSQL server (started once per session when its binaries are installed)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelladder.fleet import Fleet, parse_fleet
from tests.support.llama_server import running_llama_server
from tests.support.models import SMOL, free_port
from tests.support.postgres import PostgresServer, find_binaries, start_server


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes into the user's real data dir."""
    monkeypatch.setenv("MODELLADDER_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("MODELLADDER_TRACES", raising=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the whole session (tests.support.postgres)."""
    bindir = find_binaries()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl, postgres): apt-get install postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install 'modelladder[postgres]'")
    with start_server(bindir) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty store on the session's server (a schema of its own, see new_schema)."""
    return postgres_server.new_schema()


@pytest.fixture(params=["sqlite", "postgresql"])
def trace_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a trace-store test keeps its store: once a SQLite file, once a PostgreSQL database.
    The same test runs on both, so the two stores cannot drift apart."""
    if request.param == "sqlite":
        return tmp_path / "traces.sqlite"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def smol_fleet() -> Fleet:
    """A fleet with only the bundled SmolLM2 edge rung."""
    return parse_fleet({"rung": [dict(SMOL)]}, "<test smol fleet>")


@pytest.fixture(scope="session")
def smol_path() -> Path:
    return parse_fleet({"rung": [dict(SMOL)]}).rungs[0].resolve_path()


@pytest.fixture(scope="session")
def llama_server(smol_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server on the bundled model, on loopback.
    Yields its base URL (``http://127.0.0.1:PORT/v1``)."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(smol_path), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "4096", "--n_threads", "2", "--model_alias", "smollm2-135m"]  # fmt: skip
    with running_llama_server(cmd, f"http://127.0.0.1:{port}/v1", log, start_s=90) as base:
        yield base


@pytest.fixture(scope="session")
def distill_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One dequantised copy of the base per test session, shared by every distill test module
    (loading the GGUF into transformers takes ~35 s)."""
    d = tmp_path_factory.getbasetemp() / "distill-cache"
    d.mkdir(exist_ok=True)
    old = os.environ.get("MODELLADDER_DISTILL_CACHE")
    os.environ["MODELLADDER_DISTILL_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("MODELLADDER_DISTILL_CACHE", None)
    else:
        os.environ["MODELLADDER_DISTILL_CACHE"] = old
