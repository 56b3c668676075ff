"""Reading and replacing a fleet file safely.

Three rules, because a running ladder (or a scheduled ``distill refine``) may read the fleet
file at any moment and several commands may want to change it:

* the file is only ever *replaced*, never rewritten in place: the new text goes to a temp
  file in the same directory, is flushed to disk, then ``os.replace``-d over the old one, so
  a reader sees the old fleet or the new one, never half of each;
* a write states the digest of the text it was computed from; if the file on disk no
  longer has that digest, someone else changed it in between and the write is refused
  (:class:`FleetChangedError`) rather than silently undoing their change;
* writers serialise on an advisory lock next to the file.

The new text is produced by :func:`dumps_fleet` from the parsed data (TOML has no writer in
the standard library; a fleet file is plain data: tables, strings, numbers, booleans).
Comments at the top of the file are kept; others are not (the exact previous bytes are kept
in the promotion history, and rollback restores them byte for byte).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelladder.distill.errors import DistillError, FleetChangedError
from modelladder.fleet import Fleet, FleetError, parse_fleet

__all__ = [
    "FleetSnapshot", "current_digest", "digest_bytes", "dumps_fleet", "fleet_lock", "leading_comments",
    "read_fleet", "replace_fleet",
]  # fmt: skip


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FleetSnapshot:
    """A fleet file as read: its path, exact text, digest, parsed data and Fleet."""

    path: Path
    text: str
    digest: str
    data: dict[str, Any]
    fleet: Fleet


def read_fleet(path: Path) -> FleetSnapshot:
    path = Path(path)
    if not path.is_file():
        raise DistillError(
            f"fleet file not found: {path}; promotion edits a fleet file -- pass --fleet with an existing one "
            "(start from a copy of the bundled default: src/modelladder/default_fleet.toml)"
        )
    raw = path.read_bytes()
    text = raw.decode("utf-8")
    try:
        data = tomllib.loads(text)
        fleet = parse_fleet(data, str(path))
    except (tomllib.TOMLDecodeError, FleetError) as exc:
        raise DistillError(f"{path}: {exc}") from exc
    return FleetSnapshot(path, text, digest_bytes(raw), data, fleet)


def current_digest(path: Path) -> str | None:
    try:
        return digest_bytes(Path(path).read_bytes())
    except FileNotFoundError:
        return None


@contextmanager
def fleet_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock for writers of ``path`` (``.<name>.lock`` beside it)."""
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def replace_fleet(path: Path, text: str, expected_digest: str) -> str:
    """Atomically replace ``path`` with ``text`` if it still has ``expected_digest``.

    The new text must parse as a fleet. Returns the new digest. Callers hold :func:`fleet_lock`.
    """
    path = Path(path)
    try:
        parse_fleet(tomllib.loads(text), f"{path} (new version)")
    except (tomllib.TOMLDecodeError, FleetError) as exc:
        raise DistillError(f"refusing to write an invalid fleet to {path}: {exc}") from exc
    now = current_digest(path)
    if now != expected_digest:
        raise FleetChangedError(
            f"the fleet file {path} changed since it was read (digest {expected_digest[:12]} -> "
            f"{(now or 'missing')[:12]}); nothing was written -- re-run the command to work from the current file"
        )
    data = text.encode("utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DistillError(f"cannot write the fleet file {path}: {exc.strerror or exc}") from exc
    return digest_bytes(data)


# --------------------------------------------------------------------------- TOML writing

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v:_}" if abs(v) >= 100_000 else str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise DistillError(f"cannot write {v} to a fleet file")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise DistillError(f"cannot write a {type(v).__name__} to a fleet file")


def _scalars(table: dict[str, Any]) -> list[str]:
    return [
        f"{_key(k)} = {_value(v)}" for k, v in table.items() if not _is_table(v) and not _is_table_array(v)
    ]


def _is_table(v: Any) -> bool:
    return isinstance(v, dict)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _emit(prefix: str, table: dict[str, Any], out: list[str]) -> None:
    for k, v in table.items():
        name = f"{prefix}.{_key(k)}" if prefix else _key(k)
        if _is_table(v):
            scalars = _scalars(v)
            if scalars or not any(_is_table(x) or _is_table_array(x) for x in v.values()):
                out += ["", f"[{name}]", *scalars]  # no bare header for a table of tables only
            _emit(name, {kk: vv for kk, vv in v.items() if _is_table(vv) or _is_table_array(vv)}, out)
        elif _is_table_array(v):
            for item in v:
                out += ["", f"[[{name}]]", *_scalars(item)]
                _emit(name, {kk: vv for kk, vv in item.items() if _is_table(vv) or _is_table_array(vv)}, out)


def leading_comments(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            lines.append(line)
        else:
            break
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def dumps_fleet(data: dict[str, Any], header: list[str] = ()) -> str:  # type: ignore[assignment]
    """TOML for fleet data: top-level scalars, then ``[policy]``, ``[[rung]]``, ``[step.*]``, rest."""
    order = ["policy", "rung", "step"]
    keys = [k for k in order if k in data] + [k for k in data if k not in order]
    out: list[str] = list(header)
    top = _scalars(data)
    if top:
        out += ["", *top]
    _emit("", {k: data[k] for k in keys if _is_table(data[k]) or _is_table_array(data[k])}, out)
    text = "\n".join(out).lstrip("\n") + "\n"
    if tomllib.loads(text) != data:  # never write something that reads back differently
        raise DistillError(
            "internal error: the fleet data does not survive a TOML round trip; nothing written"
        )
    return text
