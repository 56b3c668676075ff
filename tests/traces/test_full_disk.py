"""A full disk under the trace store, for real: a 2 MiB ext4 image loop-mounted under the test
(root and ``mount`` needed), filled to ENOSPC while the gateway serves. Where loop mounts are
not possible the same test runs with ``RLIMIT_FSIZE`` lowered in this process (the kernel then
refuses to grow any file, EFBIG; Python ignores SIGXFSZ), which is what the figures say.

What a user gets (docs/reliability.md): the gateway keeps answering; each lost trace is an
ERROR in the log with its run id, ``modelladder_traces_lost_total`` counts it, ``healthz`` says
``degraded`` with the last error; once there is room again runs are recorded and ``healthz``
is ``ok``. A read-only store at start is refused by ``modelladder serve`` with one line.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelladder.gateway.health import LOSS_REASONS
from modelladder.traces import TraceStore
from tests.support.gateway import gateway, scripted, scripted_fleet

pytestmark = pytest.mark.server


def _run(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True).returncode == 0


@contextlib.contextmanager
def loop_fs(
    tmp: Path, size_mb: int = 2, ro: bool = False, image: Path | None = None
) -> Iterator[Path | None]:
    """A tiny real filesystem mounted at ``tmp/mnt`` (``None`` when this machine cannot)."""
    mnt = tmp / ("mnt-ro" if ro else "mnt")
    mnt.mkdir()
    img = image or tmp / "disk.img"
    if image is None:
        with open(img, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        if not shutil.which("mkfs.ext4") or not _run("mkfs.ext4", "-q", "-F", str(img)):
            yield None
            return
    if os.environ.get("MODELLADDER_TEST_NO_LOOP") or not _run(
        "mount", "-o", "loop,ro" if ro else "loop", str(img), str(mnt)
    ):
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


class Disk:
    """Fill and free the store's disk: the loop filesystem, or (fallback) the file-size limit."""

    def __init__(self, mnt: Path | None):
        self.mnt = mnt
        self.how = (
            "loop-mounted 2 MiB ext4, filled to ENOSPC" if mnt else "RLIMIT_FSIZE in this process (EFBIG)"
        )
        self._saved = resource.getrlimit(resource.RLIMIT_FSIZE)

    def fill(self, store_dir: Path) -> None:
        if self.mnt is None:
            biggest = max(p.stat().st_size for p in store_dir.glob("traces.sqlite*"))
            resource.setrlimit(resource.RLIMIT_FSIZE, (biggest + 4096, self._saved[1]))
            return
        with open(self.mnt / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        with contextlib.suppress(OSError), open(self.mnt / "filler2", "wb") as g:  # the last blocks
            while True:
                g.write(b"\0" * 1024)
                g.flush()

    def free(self) -> None:
        if self.mnt is None:
            resource.setrlimit(resource.RLIMIT_FSIZE, self._saved)
            return
        for name in ("filler", "filler2"):
            (self.mnt / name).unlink(missing_ok=True)


def _ask(http: httpx.Client, text: str) -> httpx.Response:
    # ~64 KB of message per run: a trace that needs fresh pages, not ones the WAL can reuse
    return http.post("/v1/chat/completions", json={"model": "ladder", "messages": [
        {"role": "user", "content": text + " " + "lorem ipsum " * 5500}]})  # fmt: skip


def test_full_disk_keeps_answering_and_counts_every_lost_trace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with loop_fs(tmp_path) as mnt:
        where = mnt if mnt is not None else tmp_path / "store"
        where.mkdir(exist_ok=True)
        disk = Disk(mnt)
        print(f"\nfull disk: {disk.how}")
        store = TraceStore(where / "traces.sqlite")
        backends: dict[str, Any] = {"tiny": scripted("tiny"), "small": scripted("small")}
        try:
            with (
                gateway(scripted_fleet(), store, backends) as srv,
                httpx.Client(base_url=srv.base_url, timeout=30) as http,
            ):
                before = _ask(http, "before")
                assert before.status_code == 200 and store.count_runs() == 1
                caplog.set_level(logging.ERROR, logger="modelladder.gateway")
                disk.fill(where)
                try:
                    answered = [_ask(http, f"while full {i}") for i in range(5)]
                    health = http.get("/healthz").json()
                    metrics = http.get("/metrics").text
                finally:
                    disk.free()
                assert [r.status_code for r in answered] == [200] * 5
                assert all(
                    r.json()["choices"][0]["message"]["content"].startswith("echo while full")
                    for r in answered
                )
                assert health["status"] == "degraded" and health["traces"]["failing"] is True
                assert health["traces"]["lost"] == 5 and health["traces"]["last_error"]
                lost = {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
                        for line in metrics.splitlines() if line.startswith("modelladder_traces_lost_total{")}  # fmt: skip
                print(f"lost traces by reason: {lost}; last error: {health['traces']['last_error']}")
                assert sum(lost.values()) == 5 and set(lost) == {f'reason="{r}"' for r in LOSS_REASONS}
                if mnt is not None:
                    assert lost['reason="disk_full"'] == 5
                loud = [r for r in caplog.records if "TRACE LOST" in r.getMessage()]
                assert len(loud) == 5 and all(r.levelno == logging.ERROR for r in loud)
                lost_ids = {r.headers["x-modelladder-run-id"] for r in answered}
                assert all(any(i in r.getMessage() for r in loud) for i in lost_ids)  # each run id is named
                # room again: recorded again, healthy again, the count stays
                after = _ask(http, "after")
                assert after.status_code == 200
                assert store.get_run(after.headers["x-modelladder-run-id"]).outcome == "resolved"
                health = http.get("/healthz").json()
                assert (
                    health["status"] == "ok"
                    and health["traces"]["failing"] is False
                    and health["traces"]["lost"] == 5
                )
                assert store.count_runs() == 2
                assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            store.close()


def test_serve_refuses_a_read_only_store_with_one_line(tmp_path: Path) -> None:
    with loop_fs(tmp_path) as mnt:
        if mnt is None:
            pytest.skip("no loop mount on this machine (root and mount(8) are needed)")
        TraceStore(mnt / "traces.sqlite").close()
        subprocess.run(["umount", str(mnt)], check=True)
        with loop_fs(tmp_path, ro=True, image=tmp_path / "disk.img") as ro:
            assert ro is not None
            out = subprocess.run(
                [sys.executable, "-c", "from modelladder.cli import main; main()", "serve", "--db",
                 str(ro / "traces.sqlite"), "--fleet", str(_fleet_file(tmp_path)), "--port", "9", "--no-preload"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "trace store" in out.stderr and "Traceback" not in out.stderr


def _fleet_file(tmp: Path) -> Path:
    p = tmp / "fleet.toml"
    p.write_text('[[rung]]\nname = "c"\nbackend = "openai"\nurl = "http://127.0.0.1:9/v1"\nparams = 1\n')
    return p
