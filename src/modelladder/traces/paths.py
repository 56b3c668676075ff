"""Where modelladder keeps its data. Reused by every part that writes files (traces, specialists...).

The trace store has one more say: ``$MODELLADDER_TRACES`` names it, either a file path (SQLite)
or a ``postgresql://`` URL (a PostgreSQL database shared by several gateway replicas).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "HOME_ENV", "TRACES_ENV", "TRACES_FILENAME", "data_dir", "default_traces_location",
    "default_traces_path", "is_postgres_url", "redact_url",
]  # fmt: skip

HOME_ENV = "MODELLADDER_HOME"
TRACES_ENV = "MODELLADDER_TRACES"
TRACES_FILENAME = "traces.sqlite"
_PG_SCHEMES = ("postgresql://", "postgres://")


def data_dir() -> Path:
    """The data directory: ``$MODELLADDER_HOME`` if set, else ``$XDG_DATA_HOME/modelladder``,
    else ``~/.local/share/modelladder``. Read from the environment on every call; never created here."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "modelladder"
    return Path.home() / ".local" / "share" / "modelladder"


def default_traces_path() -> Path:
    """The default SQLite trace store: ``data_dir() / "traces.sqlite"``."""
    return data_dir() / TRACES_FILENAME


def is_postgres_url(location: object) -> bool:
    """Whether ``location`` is a PostgreSQL URL (``postgresql://...`` or ``postgres://...``)."""
    return isinstance(location, str) and location.lower().startswith(_PG_SCHEMES)


def default_traces_location() -> Path | str:
    """The trace store to use when none is given: ``$MODELLADDER_TRACES`` (a PostgreSQL URL is
    returned as the string, anything else as a path), else :func:`default_traces_path`."""
    configured = os.environ.get(TRACES_ENV, "").strip()
    if not configured:
        return default_traces_path()
    return configured if is_postgres_url(configured) else Path(configured).expanduser()


def redact_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` parameter) replaced by
    ``***``: what error messages, logs and manifests may show."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if "password=" in parts.query.lower():
        parts = parts._replace(query=re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query))
    return urlunsplit(parts)
