"""Deterministic stand-in rungs for the bench tests (no model needed), built on the public
:class:`~modelladder.ScriptedBackend`.

:func:`bfcl_backend` recognises a registered BFCL item by its messages and tools (like the
reference rung) and answers according to a behaviour chosen per item from a hash of the id
and the backend's name: correct, wrong value, parse error, truncation, backend error,
decline -- each with made-up but deterministic confidence signals. :data:`FLEET_TOML` is the
fleet those rungs serve (two scripted edge rungs and the reference oracle).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from modelladder import ScriptedBackend
from modelladder.backends import BackendError, Call, Generation
from modelladder.bench.bfcl.data import BfclItem
from modelladder.bench.bfcl.reference import answer_text, lookup_key
from modelladder.bench.bfcl.score import reference_answer
from modelladder.contracts.tools import render_calls

FLEET_TOML = """
[policy]
min_mean_logprob = -0.6
min_token_logprob = -5.0

[[rung]]
name = "tiny"
backend = "openai"
url = "http://127.0.0.1:9/v1"
params = 100_000_000
placement = "edge"
price_per_second = 2.85e-5

[[rung]]
name = "small"
backend = "openai"
url = "http://127.0.0.1:9/v1"
params = 300_000_000
placement = "edge"
price_per_second = 2.85e-5

[[rung]]
name = "reference"
backend = "reference"
params = 1_000_000_000_000
placement = "cloud"
price_in_per_m = 2.0
price_out_per_m = 8.0
latency_s = 1.0
source = "test"
"""

BEHAVIOURS = (
    "correct",
    "correct",
    "correct",
    "wrong",
    "garbage",
    "truncated",
    "error",
    "decline",
    "correct_unsure",
)


def _h(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:8], "big")


def behaviour_for(name: str, item_id: str) -> str:
    return BEHAVIOURS[_h(name, item_id) % len(BEHAVIOURS)]


def wrong_text(item: BfclItem) -> str:
    """A well-formed answer that fails the AST checker: a call on irrelevance items, else the
    reference with its first argument value changed."""
    if item.is_irrelevance:
        fn = item.tools[0]["function"]["name"]
        return render_calls([{"name": fn, "arguments": {}}])
    calls = json.loads(json.dumps(reference_answer(item)))
    for c in calls:
        for k, v in c["arguments"].items():
            if isinstance(v, bool):
                c["arguments"][k] = not v
            elif isinstance(v, int | float):
                c["arguments"][k] = v + 987
            elif isinstance(v, str):
                c["arguments"][k] = v + "zzz"
            else:
                continue
            return render_calls(calls)
    return render_calls([{"name": "not_a_tool_at_all", "arguments": {}}])


def bfcl_backend(
    name: str,
    items: Sequence[BfclItem],
    latency_s: float = 0.4,
    behaviours: dict[str, str] | None = None,
) -> ScriptedBackend:
    """A rung that answers the registered ``items`` by a per-item behaviour (``behaviours``
    overrides the hashed choice for some item ids)."""
    by_key = {lookup_key(it.messages, it.tools): it for it in items}
    forced = dict(behaviours or {})

    def handler(call: Call) -> Generation:
        item = by_key[lookup_key(call.messages, call.contract.tools)]  # type: ignore[union-attr]
        return _answer(name, item, forced.get(item.id) or behaviour_for(name, item.id), latency_s)

    return ScriptedBackend(name, handler)


def seen(backend: ScriptedBackend, items: Sequence[BfclItem]) -> list[str]:
    """The ids of the items a backend was asked about, in order."""
    by_key = {lookup_key(it.messages, it.tools): it.id for it in items}
    return [by_key[lookup_key(c.messages, c.contract.tools)] for c in backend.calls]  # type: ignore[union-attr]


def _answer(name: str, item: BfclItem, kind: str, latency_s: float) -> Generation:
    h = _h("conf", name, item.id)
    mean = -((h % 1000) / 1000.0) * 1.2  # 0 .. -1.2
    low = mean - ((h >> 10) % 1000) / 1000.0 * 4.0  # a little to 4 below the mean
    if kind == "correct_unsure":
        mean, low = mean - 1.5, low - 3.0
    finish = "stop"
    if kind in ("correct", "correct_unsure"):
        text = answer_text(item)
    elif kind == "wrong":
        text = wrong_text(item)
    elif kind == "garbage":
        text = "I think you should call <tool_call>[{broken"
    elif kind == "truncated":
        text, finish = answer_text(item)[:-5], "length"
    elif kind == "decline":
        text = "<tool_call>[]</tool_call>"
    elif kind == "error":
        raise BackendError("timeout", f"{name}: scripted timeout")
    else:  # pragma: no cover
        raise AssertionError(kind)
    logprobs = [0.0, mean * 2 - low, low, 0.0]  # mean over the free ones is `mean`, min is `low`
    free = [False, True, True, False]
    if kind == "decline":
        logprobs, free = [0.0, -0.01], [False, False]  # no value tokens in a decline
    return Generation(
        text=text,
        prompt_tokens=300,
        completion_tokens=40,
        latency_s=latency_s,
        finish_reason=finish,
        token_logprobs=logprobs,
        free=free,
    )


def exploding_backend() -> ScriptedBackend:
    """Raises something no backend should: the ladder must still record a failed attempt."""

    def handler(call: Call) -> Generation:
        raise ZeroDivisionError("scripted crash")

    return ScriptedBackend("exploding", handler)


def chromium() -> str | None:
    """A headless-capable Chromium on PATH, or ``None`` (the report tests then skip)."""
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None
