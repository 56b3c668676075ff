"""Distillation: turn traces where a bigger model (the teacher) answered into small LoRA
specialists, prove them on held-out traces, and promote them into the fleet.

The loop: :mod:`~modelladder.distill.dataset` (traces -> chat JSONL + manifest),
:mod:`~modelladder.distill.train` (LoRA on the edge base model, in the exact runtime prompt
format), :mod:`~modelladder.distill.export_gguf` (peft adapter -> GGUF LoRA adapter that
llama.cpp loads on the unchanged quantized base), :mod:`~modelladder.distill.evaluate`
(candidate against the current first rung on the holdout), :mod:`~modelladder.distill.promote`
(atomic fleet edits, history, rollback) and :mod:`~modelladder.distill.refine` (all of it,
safe to run on a schedule).

Training needs the optional ``distill`` extra (torch, transformers, peft, gguf); building a
dataset, evaluating, promoting and rolling back do not.
"""

from modelladder.distill.errors import DistillError, FleetChangedError

__all__ = ["DistillError", "FleetChangedError"]
