"""The key that per-step learning groups runs by.

Agents behind the gateway rarely name their steps (``model: ladder`` is recorded as step
``default``: one bucket for every request), so a step without a name is keyed on its contract
instead -- its digest covers the tool set or the schema, which is what makes two requests
"the same step". A leaf module of the ladder: the store and the learning package import it from here (traces import the ladder, never the reverse).
"""

from __future__ import annotations

__all__ = ["UNNAMED_STEP", "step_key"]

UNNAMED_STEP = "default"


def step_key(step: str, contract_digest: str | None) -> str:
    """``step`` where it is a real name, else ``contract:<digest>`` (``default`` with no contract)."""
    if step == UNNAMED_STEP and contract_digest:
        return f"contract:{contract_digest}"
    return step
