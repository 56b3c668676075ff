"""``GET /v1/traces`` and ``GET /v1/traces/{run_id}``: a caller's own runs, over HTTP.

Why per tenant: one gateway serves several teams' agents, and a run holds the messages the
agent sent (its users' data). Each run is tagged with the tenant of the key that made it
(:func:`modelladder.gateway.auth.tenant_id`); a caller lists and reads only runs with its own
tag, and another tenant's run answers 404, exactly as a run that does not exist, so ids
cannot be probed. Without keys there is one tenant and every run is visible (loopback only).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from modelladder.gateway.errors import APIError
from modelladder.traces import TraceStore, UnknownRunError
from modelladder.traces.records import RunRecord, RunSummary
from modelladder.traces.store import OUTCOMES

__all__ = ["MAX_LIMIT", "TENANT_TAG", "get_run", "list_runs", "owned"]

TENANT_TAG = "tenant"
MAX_LIMIT = 200


def _plain(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _body(record: RunSummary | RunRecord) -> dict[str, Any]:
    out = _plain(dataclasses.asdict(record))
    out["object"] = "trace"
    return dict(out)


def owned(store: TraceStore, tenant: str | None, run_id: str) -> RunRecord:
    """The run, if ``tenant`` may see it; 404 otherwise (and when there is no such run)."""
    try:
        run = store.get_run(run_id)
    except UnknownRunError:
        run = None
    if run is None or (tenant is not None and run.tags.get(TENANT_TAG) != tenant):
        raise APIError(404, f"no run with id {run_id!r} is recorded", code="run_not_found", param="run_id")
    return run


def list_runs(
    store: TraceStore, tenant: str | None, limit: int, step: str | None, outcome: str | None
) -> dict[str, Any]:
    if not 1 <= limit <= MAX_LIMIT:
        raise APIError(
            400, f"limit must be within 1..{MAX_LIMIT}, not {limit}", "invalid_limit", param="limit"
        )
    if outcome is not None and outcome not in OUTCOMES:
        raise APIError(
            400, f"outcome must be one of {', '.join(OUTCOMES)}", "invalid_outcome", param="outcome"
        )
    tag = (TENANT_TAG, tenant) if tenant is not None else None
    runs = store.list_runs(limit=limit, step=step, outcome=outcome, tag=tag)
    return {"object": "list", "data": [_body(r) for r in runs]}


def get_run(store: TraceStore, tenant: str | None, run_id: str) -> dict[str, Any]:
    return _body(owned(store, tenant, run_id.removeprefix("chatcmpl-")))
