"""Input of ``modelladder bench bfcl``: categories, mode, fleet, output directory.

Everything here turns what a user typed into a validated configuration or raises
:class:`BenchInputError` with one message saying what to fix (the CLI exits 2 on it). The
checks are cheap and happen before any model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from modelladder.bench.bfcl.data import CATEGORIES
from modelladder.bench.bfcl.step import STEP_NAME
from modelladder.bench.sweep import ladder_rungs
from modelladder.fleet import Fleet, FleetError, Rung, load_fleet, parse_fleet
from modelladder.ladder import Policy

__all__ = [
    "BENCH_FLEET", "BenchConfig", "BenchInputError", "PreparedFleet", "check_out_dir", "fleet_digest",
    "load_bench_fleet", "parse_categories", "parse_mode", "prepare_fleet", "rung_problem",
]  # fmt: skip

BENCH_FLEET = "fleet.toml"  # in modelladder.bench.bfcl


class BenchInputError(ValueError):
    """Bad benchmark input (category, limit, mode, fleet, output dir): one clear message."""


# --------------------------------------------------------------------------- configuration


@dataclass
class BenchConfig:
    """One ``bench bfcl`` invocation. ``db=None``: the default trace store; ``record_traces``
    False skips the trace store (tests)."""

    categories: list[str]
    out_dir: Path
    mode: str = "ladder"
    limit: int | None = None
    fleet_path: Path | None = None
    sweep_gate: bool = False
    target: float = 0.95
    db: Path | str | None = None  # a SQLite file or a postgresql:// URL
    record_traces: bool = True
    progress: bool = True
    reuse: list[Path] = field(default_factory=list)
    # what the edge rung sees (bench.retrieval): retrieved examples (two folds by item id),
    # tool selection, history compaction
    examples_k: int = 0
    examples_from: Path | None = None
    index: str = "bm25"
    max_tools: int | None = None
    history_budget: int | None = None
    online: bool = False  # bench bfcl has no online order: the fold rule always applies
    examples_ids: Path | None = None  # only these items may be examples (replaces the fold rule)


def parse_categories(values: Sequence[str]) -> list[str]:
    """Categories from repeated and/or comma-separated values, deduplicated, order kept."""
    out: list[str] = []
    for v in values:
        for c in str(v).split(","):
            c = c.strip()
            if not c:
                continue
            if c not in CATEGORIES:
                raise BenchInputError(f"unknown BFCL category {c!r}; valid: {', '.join(CATEGORIES)}")
            if c not in out:
                out.append(c)
    if not out:
        raise BenchInputError(f"no category given; pass --category with one of: {', '.join(CATEGORIES)}")
    return out


def parse_mode(mode: str) -> tuple[str, str | None]:
    """``"ladder"`` -> ``("ladder", None)``; ``"rung:NAME"`` -> ``("rung", NAME)``."""
    if mode == "ladder":
        return "ladder", None
    if mode.startswith("rung:") and mode[5:].strip():
        return "rung", mode[5:].strip()
    raise BenchInputError(f"unknown mode {mode!r}; use `ladder` or `rung:<name>` (a rung of the fleet)")


def load_bench_fleet(path: Path | None) -> Fleet:
    """The ``--fleet`` file, or the bundled bench fleet (two edge models + ``reference``)."""
    if path is not None:
        try:
            return load_fleet(path)
        except FleetError as exc:
            raise BenchInputError(str(exc)) from exc
    import importlib.resources
    import tomllib

    text = importlib.resources.files("modelladder.bench.bfcl").joinpath(BENCH_FLEET).read_text()
    return parse_fleet(tomllib.loads(text), "<bench fleet>")


def rung_problem(rung: Rung) -> str | None:
    """Why this rung cannot run here, or ``None``. Cheap checks only (no model is loaded)."""
    if rung.backend == "llamacpp":
        try:
            rung.resolve_path()
        except FleetError as exc:
            return str(exc)
        return None
    if rung.backend == "openai":
        if rung.api_key_env and not os.environ.get(rung.api_key_env):
            return f"rung {rung.name!r}: environment variable {rung.api_key_env} is not set"
        return None
    if rung.backend == "reference":
        if rung.latency_s is None or rung.latency_s < 0:
            return f"rung {rung.name!r}: a reference rung needs `latency_s` (>= 0 seconds) in the fleet file"
        return None
    return f"rung {rung.name!r}: unknown backend {rung.backend!r}"


@dataclass
class PreparedFleet:
    fleet: Fleet
    policy: Policy
    notes: list[str] = field(default_factory=list)


def prepare_fleet(fleet: Fleet, mode: str) -> PreparedFleet:
    """Keep the rungs that can run here; in ladder mode a real cloud ``openai`` rung replaces
    ``reference``. Raises :class:`BenchInputError` when nothing usable is left."""
    kind, name = parse_mode(mode)
    notes: list[str] = []
    policy = fleet.policy_for(STEP_NAME)
    if kind == "rung":
        names = [r.name for r in fleet.rungs]
        if name not in names:
            raise BenchInputError(f"unknown rung {name!r} in --mode; the fleet has: {', '.join(names)}")
        rung = fleet.rung(name)
        problem = rung_problem(rung)
        if problem:
            raise BenchInputError(f"rung {name!r} cannot run here: {problem}")
        return PreparedFleet(
            Fleet([rung], dict(fleet.steps), fleet.default_policy, fleet.source), policy, notes
        )

    usable: list[Rung] = []
    for r in fleet.rungs:
        if r.step not in (None, STEP_NAME):
            continue  # a specialist for another step: the ladder never offers it here
        problem = rung_problem(r)
        if problem:
            notes.append(f"left out: {problem}")
        else:
            usable.append(r)
    # A real frontier endpoint (an openai rung placed in the cloud) replaces the oracle; an
    # OpenAI-compatible server at the edge (llama.cpp's, vLLM on-prem) does not.
    if any(r.backend == "openai" and r.placement == "cloud" for r in usable):
        dropped = [r.name for r in usable if r.backend == "reference"]
        if dropped:
            notes.append(f"a real cloud rung is configured, so the reference rung(s) {dropped} are not used")
        usable = [r for r in usable if r.backend != "reference"]
    if not usable:
        detail = "; ".join(notes) or "the fleet has no rungs"
        raise BenchInputError(f"the fleet {fleet.source} has no usable rung: {detail}")
    try:
        climb = ladder_rungs(policy, usable)
    except ValueError as exc:
        raise BenchInputError(f"fleet {fleet.source}: {exc}") from exc
    if not climb:
        raise BenchInputError(f"the fleet {fleet.source}: the policy leaves no eligible rung")
    return PreparedFleet(Fleet(usable, dict(fleet.steps), fleet.default_policy, fleet.source), policy, notes)


def _set_fields(obj: Any) -> dict[str, Any]:
    """The fields of a rung or policy that differ from their default: a release that adds a
    field (at its default) leaves the digest of an unchanged fleet, so a run still resumes."""
    defaults = {f.name: f.default for f in fields(obj) if f.default is not MISSING}
    return {k: v for k, v in asdict(obj).items() if k not in defaults or defaults[k] != v}


def fleet_digest(prepared: PreparedFleet) -> str:
    blob = json.dumps(
        {"rungs": [_set_fields(r) for r in prepared.fleet.rungs], "policy": _set_fields(prepared.policy)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def check_out_dir(path: Path) -> None:
    """Create ``path`` if needed and prove it is writable (else :class:`BenchInputError`)."""
    if path.exists() and not path.is_dir():
        raise BenchInputError(f"--out {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise BenchInputError(f"--out {path} is not writable: {exc.strerror or exc}") from exc
