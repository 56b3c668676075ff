"""Load BFCL v4 single-turn items from the installed ``bfcl-eval`` package.

Questions live in ``bfcl_eval/data/BFCL_v4_<category>.json`` and answers in
``bfcl_eval/data/possible_answer/BFCL_v4_<category>.json``; both are JSON-lines files (one
object per line). The irrelevance categories have no answer file: success there is making
no call at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any, Literal

from modelladder.bench.bfcl.schema import to_openai_tool

__all__ = [
    "AST_CATEGORIES", "BfclItem", "CATEGORIES", "CATEGORY_COUNTS", "IRRELEVANCE_CATEGORIES",
    "load_items", "split_half",
]  # fmt: skip

AST_CATEGORIES: tuple[str, ...] = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)
IRRELEVANCE_CATEGORIES: tuple[str, ...] = ("irrelevance", "live_irrelevance")
CATEGORIES: tuple[str, ...] = AST_CATEGORIES + IRRELEVANCE_CATEGORIES

# Item counts in bfcl-eval==2026.3.23 (asserted by the tests).
CATEGORY_COUNTS: dict[str, int] = {
    "simple_python": 400,
    "multiple": 200,
    "parallel": 200,
    "parallel_multiple": 200,
    "live_simple": 258,
    "live_multiple": 1053,
    "live_parallel": 16,
    "live_parallel_multiple": 24,
    "irrelevance": 240,
    "live_irrelevance": 884,
}


@dataclass(frozen=True)
class BfclItem:
    """One BFCL test item, ready to send to a model and to score.

    ``messages`` is the first (and, in these categories, only) turn: every message as
    ``{"role", "content"}``, system and earlier assistant messages included.
    ``functions`` are the raw BFCL docs (what the checker needs); ``tools`` the converted
    OpenAI-style tools (what the model sees). ``ground_truth`` is BFCL's possible answer,
    ``[{fn: {arg: [accepted values...]}}]``, or ``None`` for irrelevance items.
    """

    id: str
    category: str
    messages: list[dict[str, str]]
    functions: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    ground_truth: list[dict[str, Any]] | None

    @property
    def is_irrelevance(self) -> bool:
        """Success means making no call."""
        return self.category in IRRELEVANCE_CATEGORIES

    @property
    def parallel(self) -> bool:
        """Several calls are expected in one answer (the parallel* categories)."""
        return "parallel" in self.category

    @property
    def expected_calls(self) -> int:
        """How many calls a correct answer makes (0 for irrelevance items)."""
        return len(self.ground_truth) if self.ground_truth is not None else 0


def _check_category(category: str) -> None:
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL category {category!r}; valid: {', '.join(CATEGORIES)}")


@cache
def _read_lines(relpath: str) -> tuple[str, ...]:
    text = (files("bfcl_eval") / "data" / relpath).read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line.strip())


def load_items(category: str, limit: int | None = None) -> list[BfclItem]:
    """The items of one category, in file order (the first ``limit`` if given)."""
    _check_category(category)
    questions = [json.loads(line) for line in _read_lines(f"BFCL_v4_{category}.json")]
    if limit is not None:
        questions = questions[: max(limit, 0)]

    answers: dict[str, list[dict[str, Any]]] = {}
    if category not in IRRELEVANCE_CATEGORIES:
        for line in _read_lines(f"possible_answer/BFCL_v4_{category}.json"):
            obj = json.loads(line)
            answers[obj["id"]] = obj["ground_truth"]

    items = []
    for q in questions:
        if category not in IRRELEVANCE_CATEGORIES and q["id"] not in answers:
            raise ValueError(f"BFCL item {q['id']!r} has no possible answer")
        first_turn = q["question"][0]
        messages = [{"role": m["role"], "content": m["content"]} for m in first_turn]
        functions = q["function"]
        items.append(
            BfclItem(
                id=q["id"],
                category=category,
                messages=messages,
                functions=functions,
                tools=[to_openai_tool(f) for f in functions],
                ground_truth=answers.get(q["id"]),
            )
        )
    return items


def split_half(item_id: str) -> Literal["calibrate", "report"]:
    """Deterministic 50/50 split by the SHA-256 of the item id (stable across runs/machines)."""
    digest = hashlib.sha256(item_id.encode("utf-8")).digest()
    return "calibrate" if digest[0] % 2 == 0 else "report"
