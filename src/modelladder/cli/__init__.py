"""The ``modelladder`` command: a thin shell over the library. Each sub-command lives in
its own module and registers itself on :data:`main`. Bad input exits with code 2 and one
clear message (click's ``UsageError``/``BadParameter``, or :func:`fail`)."""

from __future__ import annotations

import click

from modelladder.cli._common import fail  # noqa: F401  (re-exported for sub-commands)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="modelladder")
def main() -> None:
    """Run agent steps on the smallest model that satisfies their contract."""
    import faulthandler

    # A crash in native code (llama.cpp) prints Python's stack instead of dying without a word.
    if not faulthandler.is_enabled():
        faulthandler.enable()


def _register() -> None:
    # Imported for their side effect of adding commands to `main`.
    import modelladder.cli.bench_agent_cmd  # noqa: F401  (adds `bench agent` to bench_cmd's group)
    import modelladder.cli.examples_cmd  # noqa: F401  (adds `examples`)
    from modelladder.cli import (  # noqa: F401
        bench_cmd,
        demo_cmd,
        distill_cmd,
        doctor_cmd,
        gate_cmd,
        serve_cmd,
        traces_cmd,
        ui_cmd,
    )


_register()
