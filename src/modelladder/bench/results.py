"""``results.jsonl``: one line per item, written as soon as the item is scored.

Each line is a complete, self-describing record (see :func:`result_record`): the item, the
rung that answered, every attempt with its verdict and confidence signals, the AST result,
latency, tokens and cost. It is the one source the summary, the report, a resumed run and a
gate sweep all read, so nothing has to be regenerated to recompute a figure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from modelladder.bench.bfcl.data import BfclItem, split_half
from modelladder.bench.config import BenchInputError
from modelladder.fleet import Rung
from modelladder.ladder import Attempt, Resolved, Unresolved

__all__ = [
    "RESULTS", "RUN_FILE", "ResultsWriter", "open_run", "TEXT_CAP", "attempt_record", "base_record", "error_record",
    "load_reusable", "read_results", "result_record", "score_result",
]  # fmt: skip

RESULTS = "results.jsonl"
RUN_FILE = "run.json"
TEXT_CAP = 4000  # characters of model output kept per attempt in results.jsonl


# --------------------------------------------------------------------------- results file


def read_results(path: Path, *, repair: bool = True) -> dict[str, dict[str, Any]]:
    """Records already in ``results.jsonl`` by id. A torn last line (the run was killed while
    writing it) is cut off the file (``repair``) so the next append starts on a clean line."""
    out: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return out
    data = path.read_bytes()
    good = 0
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl == -1:
            break  # no newline: torn write
        line = data[pos:nl]
        pos = nl + 1
        if line.strip():
            try:
                rec = json.loads(line)
            except ValueError:
                break
            if isinstance(rec, dict) and "id" in rec:
                out[rec["id"]] = rec
        good = pos
    if repair and good < len(data):
        with path.open("r+b") as fh:
            fh.truncate(good)
    return out


class ResultsWriter:
    """Appends one JSON line per item and makes it durable before the next item starts."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def load_reusable(
    dirs: Sequence[Path], rungs: Sequence[Rung]
) -> tuple[dict[tuple[str, str], dict[str, Any]], list[str]]:
    """Generations from earlier runs, by ``(item id, rung name)``, for a sweep to reuse instead
    of generating again. Only rungs whose configuration (model, prompt format, threads...) is
    identical in both runs are taken: greedy decoding of the same prompt on the same model
    gives the same answer, so the earlier generation *is* this run's generation. Works with
    ``rung:<name>`` runs and with other sweeps. Returns the cache and notes on what was used."""
    cache: dict[tuple[str, str], dict[str, Any]] = {}
    notes: list[str] = []
    for d in dirs:
        run_path, res_path = d / RUN_FILE, d / RESULTS
        if not run_path.is_file() or not res_path.is_file():
            raise BenchInputError(f"--reuse {d}: not a bench output directory (no {RUN_FILE} / {RESULTS})")
        try:
            run = json.loads(run_path.read_text())
        except ValueError as exc:
            raise BenchInputError(f"--reuse {d}: {RUN_FILE} is not valid JSON ({exc})") from exc
        theirs = {r.get("name"): r for r in run.get("rungs", [])}
        same = {r.name for r in rungs if theirs.get(r.name) == asdict(r)}
        before = len(cache)
        for rec in read_results(res_path, repair=False).values():
            if rec.get("outcome") == "error":
                continue
            if rec.get("rungs"):
                for name, stored in rec["rungs"].items():
                    if name in same:
                        cache.setdefault((rec["id"], name), stored)
            elif str(rec.get("mode", "")).startswith("rung:") and rec.get("attempts"):
                name = rec["mode"][5:]
                if name in same:
                    stored = dict(rec["attempts"][-1])
                    stored["calls"] = rec.get("calls")
                    cache.setdefault((rec["id"], name), stored)
        notes.append(
            f"reusing {len(cache) - before} generations of {sorted(same) or 'no rung'} from {d}"
            + ("" if same else " (no rung has the same configuration there)")
        )
    return cache, notes


# --------------------------------------------------------------------------- per item


def attempt_record(a: Attempt) -> dict[str, Any]:
    """What results.jsonl keeps of an attempt (enough to replay the gate on it)."""
    v, c = a.verdict, a.confidence
    return {
        "rung": a.rung,
        "placement": a.placement,
        "ok": None if v is None else bool(v.ok),
        "verdict_reason": v.reason if v is not None else None,
        "verdict_detail": (v.detail or "")[:500] if v is not None else None,
        "escalation_reason": a.escalation_reason,
        "accepted": a.accepted,
        "mean_logprob": c.mean_logprob if c is not None else None,
        "min_logprob": c.min_logprob if c is not None else None,
        "n_value_tokens": c.n_value_tokens if c is not None else None,
        "signals": c.signals() if c is not None else {},  # low quantiles, first choice: the learned gate's
        "latency_s": a.latency_s,
        "cost_usd": a.cost_usd,
        "prompt_tokens": a.prompt_tokens,
        "completion_tokens": a.completion_tokens,
        "finish_reason": a.finish_reason,
        "error": a.error,
        "error_detail": a.error_detail[:500] if a.error_detail else None,
        "text": (a.text or "")[:TEXT_CAP],
        "shaping": a.shaping,
    }


def score_result(item: BfclItem, result: Resolved | Unresolved) -> dict[str, Any]:
    from modelladder.bench.bfcl.score import score

    if isinstance(result, Resolved):
        s = score(item, result.value)
        return {
            "calls": result.value,
            "ast_valid": s.valid,
            "ast_error": s.error or None,
            "ast_error_type": s.error_type,
        }
    last = result.attempts[-1].escalation_reason if result.attempts else None
    why = last or result.reason
    return {
        "calls": None,
        "ast_valid": False,
        "ast_error": f"no accepted answer ({result.reason}): {why}",
        "ast_error_type": f"unresolved:{why}",
    }


def base_record(item: BfclItem, mode: str) -> dict[str, Any]:
    return {"id": item.id, "category": item.category, "split": split_half(item.id), "mode": mode}


def result_record(
    item: BfclItem, result: Resolved | Unresolved, mode: str, *, ladder: bool
) -> dict[str, Any]:
    """One results.jsonl line for an item run through :meth:`Ladder.run`."""
    rec = base_record(item, mode)
    attempts = [attempt_record(a) for a in result.attempts]
    placement = result.placement if isinstance(result, Resolved) else None
    scored = score_result(item, result)
    rec.update(
        {
            "outcome": result.outcome,
            "reason": getattr(result, "reason", None) or None,
            "rung": result.rung,
            "placement": placement,
            **scored,
            "latency_s": sum(a.latency_s for a in result.attempts),
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "cost_usd": result.cost_usd,
            "escalations": result.escalations,
            "accepted_wrong": (placement == "edge" and not scored["ast_valid"]) if ladder else None,
            "attempts": attempts,
            "run_ids": [result.run_id],
        }
    )
    return rec


def error_record(item: BfclItem, mode: str, exc: BaseException) -> dict[str, Any]:
    """An item the harness could not run (never a model failure: those are ordinary results)."""
    rec = base_record(item, mode)
    rec.update(
        {
            "outcome": "error",
            "reason": f"bench_error:{type(exc).__name__}",
            "rung": None,
            "placement": None,
            "calls": None,
            "ast_valid": False,
            "ast_error": f"{type(exc).__name__}: {exc}"[:500],
            "ast_error_type": f"bench_error:{type(exc).__name__}",
            "latency_s": 0.0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost_usd": 0.0,
            "escalations": [],
            "accepted_wrong": None,
            "attempts": [],
            "run_ids": [],
        }
    )
    return rec


def open_run(out_dir: Path, wanted: Mapping[str, Any], new_run: Mapping[str, Any]) -> dict[str, Any]:
    """Create or check ``run.json``: a resumed run must have the same ``wanted`` settings (a
    different one needs another ``--out``); a new run writes ``new_run`` (which includes them)."""
    path = out_dir / RUN_FILE
    if path.exists():
        try:
            run = json.loads(path.read_text())
        except ValueError as exc:
            raise BenchInputError(
                f"{path} is not valid JSON ({exc}); delete it or use another --out"
            ) from exc
        for k, v in wanted.items():
            if run.get(k) != v:
                raise BenchInputError(
                    f"--out {out_dir} holds a run with {k}={run.get(k)!r}, not {v!r}; "
                    "use another --out (or delete that directory) to start a different run"
                )
        return run
    path.write_text(json.dumps(dict(new_run), indent=2) + "\n")
    return dict(new_run)
