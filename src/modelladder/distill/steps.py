"""Where a recorded run's :class:`~modelladder.ladder.Step` (contract, system text) comes from.

The trace store keeps a run's input messages and its contract *digest*, not the contract
itself (contracts may hold Python checks). Distillation needs the contract twice: to check
that a teacher answer still passes it today, and to render the training prompt exactly as
the ladder renders it at run time. So a *step source* rebuilds the step for a run:

* ``bfcl`` -- runs written by ``modelladder bench bfcl`` (tags ``bench=bfcl``, ``item``,
  ``category``): the step is rebuilt from the BFCL item the way the bench builds it, and
  BFCL's AST checker is the reference for correctness;
* ``module:attr`` -- application steps: ``attr`` is a :class:`Step`, or a callable
  ``(messages, tags) -> Step`` for steps whose contract depends on the input. Correctness
  is then agreement with the teacher's answer (no other reference exists).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelladder.distill.errors import DistillError
from modelladder.ladder import Step

__all__ = ["BFCL", "BfclSource", "ImportedSource", "StepSource", "canonical", "make_source"]

BFCL = "bfcl"


class StepSource(Protocol):
    """Rebuilds the step of a recorded run and, where one exists, judges correctness."""

    spec: str  # recorded in the manifest so eval/refine rebuild steps the same way
    reference_name: str

    def step_for(self, step: str, messages: list[dict[str, Any]], tags: Mapping[str, str]) -> Step: ...

    def has_checker(self) -> bool: ...

    def correct(self, tags: Mapping[str, str], value: Any, teacher_value: Any) -> bool: ...


def canonical(value: Any) -> str:
    """A comparable form of a parsed value (key order and whitespace do not matter)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass
class BfclSource:
    """Steps of ``bench bfcl`` runs, rebuilt from the BFCL item named by the run's tags."""

    spec: str = BFCL
    reference_name: str = "BFCL AST checker (bfcl-eval)"
    _items: dict[str, Any] = field(default_factory=dict, repr=False)
    _loaded: set[str] = field(default_factory=set, repr=False)

    def item(self, tags: Mapping[str, str]) -> Any:
        item_id, category = tags.get("item"), tags.get("category")
        if not item_id or not category:
            raise DistillError(f"a bfcl run needs the tags `item` and `category`; got {dict(tags)}")
        if category not in self._loaded:
            try:
                from modelladder.bench.bfcl.data import load_items
            except ModuleNotFoundError as exc:
                raise DistillError(
                    f"BFCL runs need the `bench` extra: pip install 'modelladder[bench]' ({exc})"
                ) from exc
            try:
                for it in load_items(category):
                    self._items[it.id] = it
            except ValueError as exc:
                raise DistillError(f"cannot load BFCL category {category!r}: {exc}") from exc
            self._loaded.add(category)
        if item_id not in self._items:
            raise DistillError(f"BFCL item {item_id!r} is not in the installed bfcl-eval data")
        return self._items[item_id]

    def step_for(self, step: str, messages: list[dict[str, Any]], tags: Mapping[str, str]) -> Step:
        from modelladder.bench.bfcl.step import make_step  # the bench's own step: same contract, same prompt

        made = make_step(self.item(tags))
        return Step(step, made.contract, made.policy, made.system, made.max_tokens)

    def has_checker(self) -> bool:
        return True

    def correct(self, tags: Mapping[str, str], value: Any, teacher_value: Any) -> bool:
        from modelladder.bench.bfcl.score import score

        if value is None:
            return False
        return bool(score(self.item(tags), value).valid)


@dataclass
class ImportedSource:
    """Steps from application code: ``module:attr`` names a Step or ``(messages, tags) -> Step``."""

    spec: str
    reference_name: str = "agreement with the teacher's answer"
    _target: Step | Callable[..., Step] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        module, _, attr = self.spec.partition(":")
        if not module or not attr:
            raise DistillError(f"--step-def {self.spec!r} must look like `package.module:NAME`")
        try:
            obj: Any = importlib.import_module(module)
        except ImportError as exc:
            raise DistillError(f"--step-def {self.spec!r}: cannot import {module!r} ({exc})") from exc
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise DistillError(f"--step-def {self.spec!r}: {module!r} has no attribute {attr!r}")
            obj = getattr(obj, part)
        if not isinstance(obj, Step) and not callable(obj):
            raise DistillError(
                f"--step-def {self.spec!r} is a {type(obj).__name__}, not a Step or a callable"
            )
        self._target = obj

    def step_for(self, step: str, messages: list[dict[str, Any]], tags: Mapping[str, str]) -> Step:
        target = self._target
        made = target if isinstance(target, Step) else target(messages, dict(tags))  # type: ignore[misc]
        if not isinstance(made, Step):
            raise DistillError(f"--step-def {self.spec!r} returned {type(made).__name__}, not a Step")
        if made.name != step:
            made = Step(step, made.contract, made.policy, made.system, made.max_tokens)
        return made

    def has_checker(self) -> bool:
        return False

    def correct(self, tags: Mapping[str, str], value: Any, teacher_value: Any) -> bool:
        return (
            value is not None and teacher_value is not None and canonical(value) == canonical(teacher_value)
        )


def make_source(spec: str | None, sample_tags: Sequence[Mapping[str, str]] = ()) -> StepSource:
    """``spec`` as given (``bfcl`` or ``module:attr``); ``None`` means: ``bfcl`` when the runs
    are bench runs, otherwise an error asking for ``--step-def``."""
    if spec is None:
        if sample_tags and all(t.get("bench") == BFCL for t in sample_tags):
            return BfclSource()
        raise DistillError(
            "cannot tell which contract these runs were made with; pass --step-def package.module:STEP "
            "(a Step, or a function (messages, tags) -> Step)"
        )
    if spec == BFCL:
        return BfclSource()
    return ImportedSource(spec)
