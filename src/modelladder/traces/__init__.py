"""The trace store: every step run and every attempt, recorded in SQLite.

The raw material for inspecting what the ladder did (``modelladder traces``) and for
distilling small specialists later (:meth:`TraceStore.export_chat_jsonl`).
"""

from modelladder.traces.errors import SchemaVersionError, TraceStoreError, UnknownRunError
from modelladder.traces.migrations import LATEST_VERSION
from modelladder.traces.paths import data_dir, default_traces_path
from modelladder.traces.records import AttemptRecord, RunRecord, RunSummary
from modelladder.traces.store import TraceStore

__all__ = [
    "LATEST_VERSION", "AttemptRecord", "RunRecord", "RunSummary", "SchemaVersionError", "TraceStore",
    "TraceStoreError", "UnknownRunError", "data_dir", "default_traces_path",
]  # fmt: skip
