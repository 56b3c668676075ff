"""Errors raised by the trace store."""

from __future__ import annotations

__all__ = ["SchemaVersionError", "TraceStoreError", "UnknownRunError"]


class TraceStoreError(Exception):
    """The trace store cannot do what was asked (unwritable location, bad schema, bad input)."""


class SchemaVersionError(TraceStoreError):
    """The store's schema is newer than this version of modelladder understands."""


class UnknownRunError(TraceStoreError, KeyError):
    """No run with the given id is recorded. Also a :class:`KeyError`, for ``except KeyError``."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else ""
