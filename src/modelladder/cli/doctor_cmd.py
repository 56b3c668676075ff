"""``modelladder doctor``: what this installation is made of, and whether llama.cpp runs here.

Everything that could crash (llama.cpp itself) runs in a child process
(:mod:`modelladder.backends.llamacpp_probe`), so a build that dies on this CPU is reported as a
signal, a likely cause and the rebuild command, with exit code 2, instead of killing the command.
Nothing is written except the probe cache (and, with ``--rebuild``, the rebuilt llama-cpp-python).
"""

from __future__ import annotations

import importlib.metadata
import platform
import sqlite3
import sys
from pathlib import Path

import click

from modelladder.cli import main
from modelladder.cli._common import fail

__all__ = ["doctor"]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _store_line() -> str:
    """The default trace store and its schema version, read without creating or migrating it."""
    from modelladder.traces.migrations import LATEST_VERSION, current_version
    from modelladder.traces.paths import default_traces_location, is_postgres_url

    path = default_traces_location()
    if is_postgres_url(path):
        return _postgres_line(str(path))
    path = Path(path)
    if not path.exists():
        return f"{path} (not created yet; schema v{LATEST_VERSION} when it is)"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            version = current_version(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"{path} (unreadable: {exc})"
    state = "up to date" if version == LATEST_VERSION else f"migrates to v{LATEST_VERSION} on first write"
    return f"{path} (schema v{version}, {state})"


def _postgres_line(url: str) -> str:
    """A PostgreSQL store's schema version, read without creating or migrating anything."""
    from modelladder.traces import TraceStoreError
    from modelladder.traces.migrations import LATEST_VERSION
    from modelladder.traces.postgres import PostgresEngine

    try:
        engine = PostgresEngine(
            url, create=True, timeout=5
        )  # create=True: an empty database is not an error here
        try:
            version = engine.schema_version()
        finally:
            engine.close()
    except TraceStoreError as exc:
        return f"unusable: {exc}"
    except Exception as exc:  # the driver's own error on the first query: doctor reports, never crashes
        return f"unusable: {type(exc).__name__}: {exc}"
    label = engine.label
    if version == 0:
        return f"{label} (no tables yet; schema v{LATEST_VERSION} on first use)"
    state = "up to date" if version == LATEST_VERSION else f"migrates to v{LATEST_VERSION} on first write"
    if version > LATEST_VERSION:
        state = f"newer than this modelladder (v{LATEST_VERSION}): upgrade"
    return f"{label} (schema v{version}, {state})"


def _features(system_info: str) -> list[str]:
    """llama.cpp's ``FEATURE = 1`` pairs, in its own order."""
    out = []
    for part in system_info.replace("|", " ").split("  "):
        part = part.strip()
        if part.endswith("= 1"):
            out.append(part[: -len("= 1")].strip().split(":")[-1].strip())
    return out


@main.command("doctor")
@click.option(
    "--fleet", "fleet_path", type=click.Path(dir_okay=False), help="fleet.toml (default: the bundled fleet)"
)
@click.option(
    "--rebuild",
    is_flag=True,
    help="Rebuild llama-cpp-python from source for this CPU, without AMX (about 8 minutes), then probe.",
)
def doctor(fleet_path: str | None, rebuild: bool) -> None:
    """Check Python, the llama.cpp build, the CPU, the bundled models, the trace store and the fleet.

    Each local model evaluates a 1-token and a 64-token prompt in a child process; if the child
    dies by a signal, the signal, its likely cause and the rebuild command are printed (exit 2).
    """
    from modelladder.backends.llamacpp_probe import ProbeCrash, build_identity, remember, run_probe
    from modelladder.fleet import FleetError, load_fleet
    from modelladder.native_build import cmake_args, cpu_flags, cpu_model, install

    if rebuild:
        click.echo("rebuilding llama-cpp-python for this CPU (no AMX) ...", err=True)
        try:
            wheel = install(sys.executable, force=True)
        except Exception as exc:  # noqa: BLE001 - pip/cmake failures: say what failed
            fail(f"the rebuild failed: {exc}; see pip's output above")
        click.echo(f"installed {wheel}", err=True)

    def row(name: str, value: str) -> None:
        click.echo(f"{name:<18} {value}")

    row("modelladder", _version("modelladder"))
    row("python", f"{platform.python_version()} ({sys.executable})")
    row("platform", f"{platform.system()} {platform.machine()}")
    flags = cpu_flags()
    simd = [
        f
        for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8")
        if f in flags
    ]
    row("cpu", f"{cpu_model()}; {' '.join(simd) or 'no AVX2'}")
    row("llama-cpp-python", f"{_version('llama-cpp-python')} (build {build_identity()})")
    row("safe build args", cmake_args())

    try:
        fleet = load_fleet(fleet_path)
    except FleetError as exc:
        fail(str(exc))
    row(
        "fleet", f"{fleet.source}: {', '.join(f'{r.name} ({r.backend}, {r.placement})' for r in fleet.rungs)}"
    )
    models: dict[str, Path] = {}
    for rung in fleet.rungs:
        if rung.backend != "llamacpp":
            continue
        try:
            models[rung.name] = rung.resolve_path()
            size = models[rung.name].stat().st_size / 1e6
            row(f"model {rung.name}", f"{models[rung.name]} ({size:.0f} MB)")
        except FleetError as exc:
            row(f"model {rung.name}", f"MISSING: {exc}")
    row("trace store", _store_line())

    if not models:
        fail(
            "no local model of the fleet resolves, so llama.cpp cannot be probed; see the MISSING lines above"
        )
    click.echo("probing llama.cpp in a child process (1- and 64-token prompts per model) ...", err=True)
    result = run_probe(list(models.values()))
    if result.system_info:
        features = _features(result.system_info)
        row("llama.cpp features", " ".join(features) or result.system_info)
        if any(f.startswith("AMX") for f in features):
            row("", "warning: AMX kernels are compiled in; on VMs they can die with SIGILL")
    for name, path in models.items():
        entry = result.models.get(path.name, {})
        evals = [
            f"{n}-token {entry[f'eval_{n}']['s'] * 1000:.1f} ms" for n in (1, 64) if f"eval_{n}" in entry
        ]
        row(f"probe {name}", "ok: " + ", ".join(evals) if len(evals) == 2 else "did not finish")
    if not result.ok:
        fail(str(ProbeCrash(result, sys.executable)))
    remember(build_identity(), result)  # demo/serve/bench need not probe this build again
    click.echo("all checks passed")
