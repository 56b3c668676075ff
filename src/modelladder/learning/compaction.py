"""History compaction for long agent loops: older tool outputs shortened for edge rungs.

A long agent loop piles up tool outputs (file listings, search results: BFCL's long-context
items carry outputs of thousands of characters) that a small model reads slowly and gets lost
in, while what it needs is mostly the latest result. So for edge rungs the outputs are kept
newest first within a budget; an older output that does not fit keeps its first
``HEAD_CHARS`` characters and says how much was cut. The cloud rung gets the full history.

The rule is deterministic (same conversation, same budget, same result) and what it did is
returned as a record that goes into the attempt's trace (``shaping.compaction``), so
distillation trains on what the model saw. Tokens are estimated as characters / 4, the
usual rule of thumb for English and JSON with BPE vocabularies: the budget is a knob, not
an exact count, and the estimate needs no tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["CHARS_PER_TOKEN", "HEAD_CHARS", "compact_history"]

CHARS_PER_TOKEN = 4
HEAD_CHARS = 200


def _text(m: dict[str, Any]) -> str:
    c = m.get("content")
    return c if isinstance(c, str) else "" if c is None else str(c)


def compact_history(messages: Sequence[dict[str, Any]], budget_tokens: int,
                    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:  # fmt: skip
    """``messages`` with tool outputs beyond ``budget_tokens`` (all outputs together, newest
    kept first) shortened, and the record of what was cut (``None`` when nothing was)."""
    budget = budget_tokens * CHARS_PER_TOKEN
    out = [dict(m) for m in messages]
    cut: list[dict[str, int]] = []
    used = 0
    newest = True
    for i in range(len(out) - 1, -1, -1):
        if out[i].get("role") != "tool":
            continue
        text = _text(out[i])
        if used + len(text) <= budget:
            used += len(text)
        else:
            # the newest output keeps what fits of the budget; older ones keep a head
            keep = max(budget - used, HEAD_CHARS) if newest else HEAD_CHARS
            if keep < len(text):
                out[i]["content"] = f"{text[:keep]} ...[{len(text) - keep} characters cut]"
                cut.append({"index": i, "chars": len(text), "kept": keep})
                used += keep
            else:
                used += len(text)
        newest = False
    if not cut:
        return out, None
    return out, {
        "budget_tokens": budget_tokens,
        "head_chars": HEAD_CHARS,
        "cut": sorted(cut, key=lambda c: c["index"]),
    }
