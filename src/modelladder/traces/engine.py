"""What the trace store needs from a database (modelladder.traces.connect picks one).

:class:`~modelladder.traces.store.TraceStore` writes its queries once, in the SQL both SQLite
and PostgreSQL speak, with ``?`` placeholders. An :class:`Engine` is one open connection plus
the few things that differ between the two: how a write transaction takes its lock (SQLite's
``BEGIN IMMEDIATE``, PostgreSQL's row locks and an advisory lock for migrations), how a read
gets one snapshot, the two SQL fragments that have no common spelling (a tag filter over the
JSON ``tags`` column, a run-id prefix match), and which driver errors mean "this run is
already recorded".

Why not a SQL layer such as SQLAlchemy: the queries are already portable, and what differs is
exactly what such a layer does not remove (DDL types in the versioned migrations, locking,
JSON functions, error classification), while it would bring its own transaction and pooling
semantics to reconcile with ``BEGIN IMMEDIATE`` and fork-safety. Two small engines keep each
database's guarantees visible in one file each.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Cursor", "Engine", "Row"]


class Row(Protocol):
    """A result row: by column name (``row["run_id"]``) or by position (``row[0]``)."""

    def __getitem__(self, key: int | str, /) -> Any: ...


class Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Engine(ABC):
    """One connection to one trace store. Not thread-safe by itself: the store serialises use."""

    #: what :attr:`TraceStore.path` shows: a :class:`~pathlib.Path`, ``":memory:"`` or a URL
    #: without its password
    label: Path | str
    #: "at /path/traces.sqlite", "in memory", "at postgresql://host/db": for error messages
    where: str
    #: the driver's error base classes, wrapped into TraceStoreError by the store
    errors: tuple[type[BaseException], ...]
    #: ``EXISTS``-style predicate on the run alias ``r`` taking two ``?``: tag key, tag value
    tag_clause: str
    #: predicate on ``run_id`` matching a prefix; its parameters come from :meth:`prefix_params`
    prefix_clause: str

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement with ``?`` placeholders."""

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""

    @abstractmethod
    def write(self) -> AbstractContextManager[Engine]:
        """One write transaction: committed on success, rolled back on any exception. Takes its
        lock up front where the database needs that to avoid failing half-way."""

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[Engine]:
        """One consistent read snapshot over several statements."""

    @abstractmethod
    def schema_version(self) -> int:
        """The store's schema version: 0 for an empty database."""

    @abstractmethod
    def migrate(self, target: int | None = None) -> list[int]:
        """Apply the pending migrations (up to ``target``); refuse a newer schema."""

    @abstractmethod
    def duplicate_run(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the primary key of ``runs`` refusing a second row."""

    @abstractmethod
    def prefix_params(self, prefix: str) -> list[Any]: ...

    @property
    @abstractmethod
    def broken(self) -> bool:
        """The connection is gone (server restarted, network cut): the store reconnects."""

    @abstractmethod
    def close(self) -> None: ...
