"""Tool selection: show an edge rung the few tools a conversation needs, not all of them.

Agent steps offer 9-39 tools (about 5k prompt tokens in BFCL's multi-turn items) and a 135M
model both reads them slowly and picks among them badly. Retrieving tools instead of listing
them all is what RAG-MCP and TinyAgent's Tool-RAG do (``../shared/REFERENCE.md``). Here the
relevance is Okapi BM25 of each tool's name, description and parameter docs against the
conversation's user messages (the latest counted twice), with every tool already called in
the conversation kept: an agent that has used a tool tends to use it again, and its results
are in the history the model reads.

BM25 over a list of at most a few dozen tools is a few lines, so it is written here rather
than pulled in (``rank-bm25``, ``bm25s`` index corpora; this scores one small list per step).
Deterministic: ties keep the declaration order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from modelladder.learning.text_terms import terms

__all__ = ["called_tools", "conversation_text", "rank_tools", "select_tools", "tool_text"]

K1, B = 1.2, 0.75


def tool_text(tool: dict[str, Any]) -> str:
    """What a tool is found by: name, description, parameter names and their descriptions."""
    fn = tool.get("function", tool)
    parts = [str(fn.get("name", "")), str(fn.get("description", ""))]
    props = (fn.get("parameters") or {}).get("properties") or {}
    for name, prop in props.items():
        parts.append(str(name))
        if isinstance(prop, dict):
            parts.append(str(prop.get("description", "")))
    return " ".join(parts)


def conversation_text(messages: Sequence[dict[str, Any]]) -> str:
    """The user messages of a conversation, the latest one twice (it says what is asked now)."""
    users = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
    return " ".join(users + users[-1:])


def called_tools(messages: Sequence[dict[str, Any]]) -> list[str]:
    """Names of the tools the conversation's assistant turns already called, first call first."""
    out: list[str] = []
    for m in messages:
        for call in m.get("tool_calls") or ():
            name = (call.get("function") or {}).get("name") if isinstance(call, dict) else None
            if isinstance(name, str) and name not in out:
                out.append(name)
    return out


def rank_tools(tools: Sequence[dict[str, Any]], query: str) -> list[tuple[str, float]]:
    """Every tool's name with its BM25 score against ``query``, best first (ties: declared order)."""
    docs = [terms(tool_text(t)) for t in tools]
    names = [str(t.get("function", t).get("name")) for t in tools]
    n = len(docs)
    avg = sum(map(len, docs)) / max(n, 1) or 1.0
    df: Counter[str] = Counter(w for d in docs for w in set(d))
    q = Counter(terms(query))
    scores = []
    for i, d in enumerate(docs):
        tf = Counter(d)
        s = 0.0
        for w, qn in q.items():
            if w not in tf:
                continue
            idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
            s += qn * idf * tf[w] * (K1 + 1) / (tf[w] + K1 * (1 - B + B * len(d) / avg))
        scores.append((i, s))
    scores.sort(key=lambda x: (-x[1], x[0]))
    return [(names[i], s) for i, s in scores]


def select_tools(tools: Sequence[dict[str, Any]], messages: Sequence[dict[str, Any]], k: int,
                 keep: Iterable[str] = ()) -> list[str]:  # fmt: skip
    """The names an edge rung is offered, in declaration order: every tool in ``keep`` and
    already called in ``messages`` (declared ones only), then the best-ranked others up to
    ``k`` in all (more than ``k`` when more must be kept)."""
    declared = [str(t.get("function", t).get("name")) for t in tools]
    chosen = [n for n in dict.fromkeys([*called_tools(messages), *keep]) if n in declared]
    for name, _ in rank_tools(tools, conversation_text(messages)):
        if len(chosen) >= k:
            break
        if name not in chosen:
            chosen.append(name)
    picked = set(chosen)
    return [n for n in declared if n in picked]
