"""Is there a call-or-decline signal in SmolLM2's first choice? (the signal the BFCL gate lacks)

SmolLM2-135M never declines a BFCL item (0 of 1,098), so the irrelevance categories are lost at
the edge, and the ladder's confidence gate cannot see the decision: the choice between ``]``
(decline: ``<tool_call>[]</tool_call>``) and ``{`` (a call) carries no letter or digit, so it is
not a "value token". This measures the candidate signal directly: at the first point where the
grammar lets the model choose between declining and calling (after following its own greedy
choice of layout whitespace), the probability it gives to declining, renormalised over what the
grammar allows (tokens are classed by the text they complete: ``<tool_call>[]`` or
``<tool_call>[{``, whitespace ignored). It reports that probability for items that should be declined (irrelevance) and
for items that should be called, the ROC AUC of the signal, and how many irrelevance items a
threshold would send up at a given rate of needless escalations.

    .venv/bin/python benchmarks/decline_signal.py --limit 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from modelladder import ToolCalls, load_fleet
from modelladder.backends import open_backend
from modelladder.backends.llamacpp import LlamaCppBackend
from modelladder.bench.bfcl.data import load_items

CALL_CATEGORIES = ("simple_python", "multiple", "live_simple")
DECLINE_CATEGORIES = ("irrelevance",)
MAX_LAYOUT_TOKENS = 4


def decline_probability(backend: LlamaCppBackend, messages: list[dict], contract: ToolCalls) -> float:  # type: ignore[type-arg]
    """P(decline) at the model's first call-or-decline choice, over the tokens the grammar allows."""
    model = backend.model
    llm = model.llm
    prompt, _ = backend.render(messages, contract)
    backend._feed_prompt(prompt)
    matcher = backend._matcher(contract, messages)
    assert matcher is not None
    mask = np.zeros((model.n_vocab + 31) // 32, dtype=np.int32)
    so_far = ""  # text generated so far, whitespace removed
    for _ in range(MAX_LAYOUT_TOKENS + 1):
        forced = matcher.compute_ff_tokens()
        if forced:
            matcher.consume_tokens(forced)
            llm.eval(forced)
            so_far += _squeeze(llm.detokenize(forced))
        logits = backend._logits()
        allowed = backend._allowed(matcher, mask)
        ids = np.flatnonzero(allowed)
        z = logits[ids] - logits[ids].max()
        p = np.exp(z) / np.exp(z).sum()
        kinds = [_kind(so_far + _squeeze(llm.detokenize([int(t)]))) for t in ids]
        decline = float(sum(pi for pi, k in zip(p, kinds, strict=True) if k == "decline"))
        call = float(sum(pi for pi, k in zip(p, kinds, strict=True) if k == "call"))
        top = int(np.argmax(p))
        if kinds[top] != "open" or decline + call > 0.5:  # the model makes its choice here
            return decline / max(decline + call, 1e-12)
        matcher.consume_token(int(ids[top]))  # layout or the opening bracket: follow the model
        llm.eval([int(ids[top])])
        so_far += _squeeze(llm.detokenize([int(ids[top])]))
    return 0.0


def _squeeze(b: bytes) -> str:
    return "".join(b.decode("utf-8", "replace").split())


def _kind(text: str) -> str:
    """``decline`` / ``call`` once the text after ``<tool_call>[`` shows which; else ``open``."""
    rest = text.split("<tool_call>[", 1)
    if len(rest) < 2 or not rest[1]:
        return "open"
    return "decline" if rest[1].startswith("]") else "call" if rest[1].startswith("{") else "open"


def auc(pos: list[float], neg: list[float]) -> float:
    """P(a should-decline item scores higher than a should-call one); ties count half."""
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=100, help="items per category")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    backend = open_backend(load_fleet().rung("smollm2-135m"))
    t0 = time.time()
    scores: dict[str, list[float]] = {}
    for cat in (*CALL_CATEGORIES, *DECLINE_CATEGORIES):
        scores[cat] = []
        for item in load_items(cat, limit=args.limit):
            contract = ToolCalls(item.tools, parallel=item.parallel, allow_no_call=True)
            scores[cat].append(decline_probability(backend, item.messages, contract))
    pos = [s for c in DECLINE_CATEGORIES for s in scores[c]]
    neg = [s for c in CALL_CATEGORIES for s in scores[c]]
    figures: dict[str, object] = {
        "items_per_category": args.limit,
        "median_p_decline": {c: statistics.median(v) for c, v in scores.items()},
        "mean_p_decline": {c: statistics.mean(v) for c, v in scores.items()},
        "share_decline_argmax": {c: sum(s > 0.5 for s in v) / len(v) for c, v in scores.items()},
        "auc_decline_vs_call": auc(pos, neg),
    }
    caught = {}
    for fp in (0.05, 0.10, 0.20):
        thr = float(np.quantile(neg, 1 - fp))
        caught[f"{fp:.0%} of call items escalated"] = {
            "threshold": thr,
            "irrelevance_caught": sum(s > thr for s in pos) / len(pos),
        }
    figures["irrelevance_caught_at"] = caught
    figures["seconds"] = round(time.time() - t0, 1)
    figures["machine"] = f"{os.cpu_count()} cores"
    figures["date"] = time.strftime("%Y-%m-%d")
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
