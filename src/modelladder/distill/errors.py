"""The one error type of the distillation loop: bad input, said once and clearly.

The CLI turns it into ``error: <message>`` and exit code 2, so every refusal (too few
examples, an empty split, a corrupt checkpoint, a fleet file that changed under us) reads
the same way to a person and to a scheduler.
"""

from __future__ import annotations

__all__ = ["DistillError", "FleetChangedError"]


class DistillError(ValueError):
    """Bad input to a distillation command. The message says what is wrong and what to do."""


class FleetChangedError(DistillError):
    """The fleet file is not the one that was read: someone else wrote it in between."""
