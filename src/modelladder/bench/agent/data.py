"""Load BFCL v4 multi-turn items (questions, gold call strings, tool docs) from ``bfcl-eval``.

The shapes are in ``../shared/REFERENCE.md`` ("BFCL multi-turn"). What this module adds:

* the tools an item sees, as OpenAI tools, converted with the single-turn benchmark's
  :func:`~modelladder.bench.bfcl.schema.to_openai_tool` (the same conversion everywhere);
* ``miss_func`` items, handled as BFCL's own inference loop does
  (``bfcl_eval.utils.populate_test_cases_with_predefined_functions`` and
  ``BaseHandler.inference_multi_turn_FC``): the held-out functions are left out of the tool
  list until their turn, whose (empty) question becomes BFCL's fixed "I have updated some more
  functions" message. ``excluded_function`` is ignored, as BFCL ignores it.

Nothing here imports ``bfcl_eval.utils`` or ``bfcl_eval.constants.model_config`` (they pull in
provider SDKs); ``executable_backend_config`` and the data files need the standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

from modelladder.bench.bfcl.schema import to_openai_tool

__all__ = [
    "ADDED_FUNCTIONS_PROMPT",
    "AgentItem",
    "CATEGORIES",
    "check_category",
    "class_docs",
    "load_agent_items",
]

CATEGORIES: tuple[str, ...] = (
    "multi_turn_base",
    "multi_turn_long_context",
    "multi_turn_miss_func",
    "multi_turn_miss_param",
)
# BFCL's fixed user message for a miss_func turn (bfcl_eval.constants.default_prompts).
ADDED_FUNCTIONS_PROMPT = "I have updated some more functions you can choose from. What about now?"


@dataclass(frozen=True)
class AgentItem:
    """One multi-turn item. ``turns[t]`` are the user messages of turn ``t`` (already with the
    miss_func prompt); ``gold[t]`` the gold call strings of that turn (``[]``: the right answer
    is not to call); ``functions`` the raw BFCL docs visible from the start; ``added[t]`` the
    docs that become visible at turn ``t``. ``entry`` is the raw BFCL entry the official
    checker takes."""

    id: str
    category: str
    turns: list[list[dict[str, str]]]
    gold: list[list[str]]
    functions: list[dict[str, Any]]
    added: dict[int, list[dict[str, Any]]]
    entry: dict[str, Any] = field(repr=False)

    @property
    def long_context(self) -> bool:
        return "long_context" in self.category

    @property
    def n_gold_calls(self) -> int:
        return sum(len(t) for t in self.gold)

    def functions_at(self, turn: int) -> list[dict[str, Any]]:
        """The raw docs the model may call in ``turn`` (held-out ones appear at their turn)."""
        out = list(self.functions)
        for t in sorted(self.added):
            if t <= turn:
                out.extend(self.added[t])
        return out

    def tools_at(self, turn: int) -> list[dict[str, Any]]:
        """:meth:`functions_at` as OpenAI tools (what the model sees)."""
        return _tools(tuple(json.dumps(f, sort_keys=True) for f in self.functions_at(turn)))


@cache
def _tools(docs: tuple[str, ...]) -> list[dict[str, Any]]:
    return [to_openai_tool(json.loads(d)) for d in docs]


def check_category(category: str) -> None:
    if category not in CATEGORIES:
        raise ValueError(f"unknown multi-turn category {category!r}; valid: {', '.join(CATEGORIES)}")


@cache
def _lines(relpath: str) -> tuple[str, ...]:
    text = (files("bfcl_eval") / "data" / relpath).read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line.strip())


@cache
def class_docs(class_name: str) -> tuple[str, ...]:
    """The function docs (JSON lines) of one executable class."""
    from bfcl_eval.constants.executable_backend_config import MULTI_TURN_FUNC_DOC_FILE_MAPPING

    return _lines(f"multi_turn_func_doc/{MULTI_TURN_FUNC_DOC_FILE_MAPPING[class_name]}")


def load_agent_items(category: str, limit: int | None = None) -> list[AgentItem]:
    """The items of one category in file order (the first ``limit`` if given)."""
    check_category(category)
    questions = [json.loads(x) for x in _lines(f"BFCL_v4_{category}.json")]
    if limit is not None:
        questions = questions[: max(limit, 0)]
    gold = {
        g["id"]: g["ground_truth"]
        for g in map(json.loads, _lines(f"possible_answer/BFCL_v4_{category}.json"))
    }
    items = []
    for q in questions:
        if q["id"] not in gold:
            raise ValueError(f"BFCL item {q['id']!r} has no ground truth")
        docs = [json.loads(d) for c in q["involved_classes"] for d in class_docs(c)]
        added: dict[int, list[dict[str, Any]]] = {}
        for turn, names in (q.get("missed_function") or {}).items():
            held = [d for d in docs if d["name"] in names]
            docs = [d for d in docs if d["name"] not in names]
            added[int(turn)] = held
        turns = []
        for t, msgs in enumerate(q["question"]):
            if t in added and not msgs:
                msgs = [{"role": "user", "content": ADDED_FUNCTIONS_PROMPT}]
            turns.append([{"role": m["role"], "content": m["content"]} for m in msgs])
        if len(turns) != len(gold[q["id"]]):
            raise ValueError(f"BFCL item {q['id']!r}: {len(turns)} turns but {len(gold[q['id']])} gold turns")
        items.append(AgentItem(q["id"], category, turns, gold[q["id"]], docs, added, q))
    return items
