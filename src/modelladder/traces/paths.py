"""Where modelladder keeps its data. Reused by every part that writes files (traces, specialists...)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["HOME_ENV", "TRACES_FILENAME", "data_dir", "default_traces_path"]

HOME_ENV = "MODELLADDER_HOME"
TRACES_FILENAME = "traces.sqlite"


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
    """The default trace store: ``data_dir() / "traces.sqlite"``."""
    return data_dir() / TRACES_FILENAME
