"""The one progress-bar layout of every long command (bench, distill train, distill eval).

Description, bar, n/N, the command's own running figures, elapsed time and ETA, on stderr
so that a command's output stays clean for pipes.
"""

from __future__ import annotations

from typing import Any


def progress_bar(*fields: str, console: Any = None, enabled: bool = True) -> Any:
    """A ``rich.progress.Progress``; ``fields`` are ``TextColumn`` templates such as
    ``"acc {task.fields[acc]}"`` shown between the count and the elapsed time."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *(TextColumn(f) for f in fields),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        disable=not enabled,
    )
