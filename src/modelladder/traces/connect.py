"""How a location picks its engine: a ``postgresql://`` URL, ``":memory:"`` or a SQLite file.

Its own module so that the engines (which import :mod:`modelladder.traces.engine` for their
base class) are imported by nothing that they import.
"""

from __future__ import annotations

from pathlib import Path

from modelladder.traces.engine import Engine
from modelladder.traces.paths import is_postgres_url

__all__ = ["open_engine"]


def open_engine(location: Path | str, *, create: bool, timeout: float) -> Engine:
    """Connect to the store at ``location``: a ``postgresql://`` URL, ``":memory:"`` or a file."""
    if is_postgres_url(location):
        from modelladder.traces.postgres import PostgresEngine

        return PostgresEngine(str(location), create=create, timeout=timeout)
    from modelladder.traces.sqlite import SqliteEngine

    return SqliteEngine(location, create=create, timeout=timeout)
