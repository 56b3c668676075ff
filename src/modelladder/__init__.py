"""modelladder: run each agent step on the smallest model that satisfies its contract.

The public surface, all importable from here::

    from modelladder import Ladder, Step, ToolCalls, JsonSchema, Choice, Regex
"""

from modelladder.ladder import (  # noqa: I001  (ladder before fleet: the fleet reads the policy type)
    Attempt, Confidence, Ladder, Policy, Resolved, Step, StepResult, Unresolved, UnresolvedError,
)
from modelladder.backends import Backend, BackendError, Generation, GenerationParams
from modelladder.contracts import (
    Check, Choice, Contract, ContractError, JsonSchema, Regex, ToolCalls, Verdict, check, contract_from,
    grounded_arguments,
)
from modelladder.fleet import Fleet, FleetError, Rung, load_fleet

__version__ = "0.1.0"

__all__ = [
    "Attempt", "Backend", "BackendError", "Check", "Choice", "Confidence", "Contract", "ContractError",
    "Fleet", "FleetError", "Generation", "GenerationParams", "JsonSchema", "Ladder", "Policy", "Regex",
    "Resolved", "Rung", "Step", "StepResult", "ToolCalls", "Unresolved", "UnresolvedError", "Verdict",
    "check", "contract_from", "grounded_arguments", "load_fleet",
]
