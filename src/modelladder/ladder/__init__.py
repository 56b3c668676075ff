"""The ladder: smallest rung first, validate, gate on confidence, escalate on failure."""

from modelladder.ladder.outcome import Attempt, Confidence, Resolved, StepResult, Unresolved, UnresolvedError
from modelladder.ladder.policy import Policy, eligible_rungs, judge, next_action
from modelladder.ladder.runner import Ladder, TraceSink, validate_messages
from modelladder.ladder.step import Step

__all__ = [
    "Attempt", "Confidence", "Ladder", "Policy", "Resolved", "Step", "StepResult", "TraceSink", "Unresolved",
    "UnresolvedError", "eligible_rungs", "judge", "next_action", "validate_messages",
]  # fmt: skip
