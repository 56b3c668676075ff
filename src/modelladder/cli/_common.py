"""Helpers shared by sub-commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from modelladder.fleet import Fleet


class CliError(click.ClickException):
    """One clear message, exit code 2 (bad input), no traceback."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def fail(message: str) -> NoReturn:
    raise CliError(message)


class TraceStoreParam(click.ParamType):
    """``--db``: a SQLite file (a :class:`~pathlib.Path`) or a ``postgresql://`` URL, kept as the
    string (a Path would fold its ``//``)."""

    name = "FILE|URL"
    _file = click.Path(dir_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path | str:
        from modelladder.traces.paths import is_postgres_url

        if isinstance(value, Path) or is_postgres_url(value):
            return value
        return self._file.convert(value, param, ctx)


TRACE_STORE = TraceStoreParam()
TRACE_STORE_HELP = "Trace store: a SQLite file or a postgresql:// URL (default: $MODELLADDER_TRACES, else $MODELLADDER_HOME/traces.sqlite)."


def probe_llama_or_fail(fleet: Fleet) -> None:
    """Before a command loads a model in-process: does llama.cpp run on this CPU? (Once per build.)

    The probe runs in a child process, so a build that dies here (SIGILL with AMX kernels on a
    VM, for example) becomes one message with the rebuild command and exit code 2.
    """
    from modelladder.backends.llamacpp_probe import ProbeCrash, ensure_runs
    from modelladder.fleet import FleetError

    models = []
    for rung in fleet.rungs:  # one model answers for the build; the first that resolves
        if rung.backend == "llamacpp":
            try:
                models.append(rung.resolve_path())
                break
            except FleetError:
                continue  # the command reports a missing model itself
    try:
        ensure_runs(models)
    except ProbeCrash as exc:
        fail(str(exc))
