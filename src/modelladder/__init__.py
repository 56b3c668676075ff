"""modelladder: run each agent step on the smallest model that satisfies its contract.

The public surface, all importable from here::

    from modelladder import Ladder, Step, ToolCalls, JsonSchema, Choice, Regex, Grammar, Sql

``__all__`` is the whole of it (``tests/test_public_api.py`` holds it to that list); the
version is the installed distribution's, read from its metadata, so it is written once, in
``pyproject.toml``.
"""

from importlib import metadata as _metadata

from modelladder.backends import Backend, BackendError, Generation, GenerationParams, ScriptedBackend
from modelladder.contracts import (
    Check,
    Choice,
    Contract,
    ContractError,
    Grammar,
    JsonSchema,
    Regex,
    Sql,
    ToolCalls,
    Verdict,
    check,
    contract_from,
    grounded_arguments,
)
from modelladder.fleet import Fleet, FleetError, Rung, load_fleet
from modelladder.ladder import (
    Attempt,
    Confidence,
    Ladder,
    Policy,
    Resolved,
    Step,
    StepResult,
    TraceSink,
    Unresolved,
    UnresolvedError,
)

try:
    __version__ = _metadata.version("modelladder")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Attempt", "Backend", "BackendError", "Check", "Choice", "Confidence", "Contract", "ContractError",
    "Fleet", "FleetError", "Generation", "GenerationParams", "Grammar", "JsonSchema", "Ladder", "Policy",
    "Regex", "Resolved", "Rung", "ScriptedBackend", "Sql", "Step", "StepResult", "ToolCalls", "TraceSink", "Unresolved",
    "UnresolvedError", "Verdict", "check", "contract_from", "grounded_arguments", "load_fleet",
]  # fmt: skip
