"""``modelladder bench agent``: BFCL v4 multi-turn workloads, executed on the real tool
classes, scored step by step (:mod:`.steps`) and workflow by workflow (:mod:`.loops`)."""

__all__ = []
