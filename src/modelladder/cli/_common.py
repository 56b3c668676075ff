"""Helpers shared by sub-commands."""

from __future__ import annotations

from typing import Any, NoReturn

import click


class CliError(click.ClickException):
    """One clear message, exit code 2 (bad input), no traceback."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def fail(message: str) -> NoReturn:
    raise CliError(message)
