"""A step: one kind of agent action, declared once with its contract and used many times."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelladder.contracts.base import Contract
from modelladder.ladder.policy import Policy

__all__ = ["Step"]


@dataclass(frozen=True)
class Step:
    """``name`` keys the step's policy in the fleet file and its traces (and, later, its
    distilled specialist). ``contract=None`` is a free-text step. ``policy`` overrides
    the fleet's policy for this step field by field."""

    name: str
    contract: Contract | None = None
    policy: Policy | None = None
    system: str | None = None
    max_tokens: int = 256

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError(
                f"step name {self.name!r} must be non-empty and use letters, digits, '-', '_', '.'"
            )
        if self.max_tokens <= 0:
            raise ValueError("max_tokens must be positive")

    def with_system(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages a model sees: the step's system text first, when it has one."""
        if not self.system:
            return list(messages)
        if messages and messages[0].get("role") == "system":
            first = {**messages[0], "content": f"{self.system}\n\n{messages[0].get('content') or ''}"}
            return [first, *messages[1:]]
        return [{"role": "system", "content": self.system}, *messages]
