"""A throwaway PostgreSQL server for the tests: ``initdb`` into a temporary directory,
``pg_ctl start`` on a free loopback port, one fresh database per test, all removed afterwards.

Why a real server: the PostgreSQL store's guarantees (transactions, advisory-locked
migrations, several processes and replicas on one database) are the server's; a fake would
test nothing of them. PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` user (Debian's package creates it) or ``nobody``. Without the server binaries the
tests that need them skip, saying what to install.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.models import free_port

__all__ = ["PostgresServer", "find_binaries", "start_server"]


def find_binaries() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``: Debian's newest
    ``/usr/lib/postgresql/*/bin``, else wherever ``initdb`` is on PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    for d in reversed(candidates):
        if all(os.access(Path(d) / b, os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return Path(d)
    found = shutil.which("initdb")
    if found:
        d = Path(found).resolve().parent
        if (d / "pg_ctl").exists() and (d / "postgres").exists():
            return d
    return None


def _server_user() -> str | None:
    """The user to run the server as: ``None`` (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return user
    raise RuntimeError("running as root and there is no 'postgres' or 'nobody' user to run PostgreSQL as")


def _as(user: str | None, cmd: list[str]) -> list[str]:
    if user is None:
        return cmd
    runuser = shutil.which("runuser")
    return (
        [runuser, "-u", user, "--", *cmd] if runuser else ["su", user, "-s", "/bin/sh", "-c", shlex.join(cmd)]
    )


@dataclass
class PostgresServer:
    """A running server. :meth:`new_database` gives each test its own empty database."""

    bindir: Path
    datadir: Path
    port: int
    user: str | None
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def new_schema(self) -> str:
        """Create an empty schema in the ``postgres`` database and return a URL whose
        ``search_path`` is that schema: a fresh store for one test at a fraction of the cost of
        a database (which copies ~7 MB and leaves it to delete at the end)."""
        import psycopg

        name = f"s{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return f"{self.url()}?options=-csearch_path%3D{name}"

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = _as(self.user, [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args])
        return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


@contextlib.contextmanager
def start_server(bindir: Path) -> Iterator[PostgresServer]:
    """initdb + pg_ctl start (fsync off: a test server loses nothing that matters on a crash)."""
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="modelladder-pg-"))
    datadir, log = root / "data", root / "server.log"
    try:
        if user is not None:
            info = pwd.getpwnam(user)
            os.chown(root, info.pw_uid, info.pw_gid)
        init = subprocess.run(
            _as(user, [str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust",
                       "-E", "UTF8", "--locale=C", "--no-sync"]),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        server = PostgresServer(bindir, datadir, free_port(), user)
        options = (
            f"-p {server.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        started = server.ctl("-l", str(log), "-o", options, "-w", "-t", "60", "start")
        if started.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed:\n{started.stdout}\n{started.stderr}\n{tail}")
        try:
            yield server
        finally:
            server.ctl("stop", "-m", "immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
