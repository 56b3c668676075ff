"""The prompt cache: bookkeeping on its own, then with the real SmolLM2 model.

The model tests load their own instance (a context size no other test uses), so the cache
they inspect holds only their own conversations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelladder.backends.base import BackendError, GenerationParams
from modelladder.backends.llamacpp import LlamaCppBackend
from modelladder.backends.loaded_model import LoadedModel, load_model
from modelladder.backends.prompt_cache import PrefixLRU, SavedState, common_prefix
from modelladder.fleet import FleetError, parse_fleet
from tests.support.models import SMOL


def _state(tokens: list[int], adapter: str | None = None, nbytes: int = 100) -> SavedState:
    return SavedState(np.asarray(tokens, dtype=np.intc), adapter, data=None, nbytes=nbytes)


def _arr(tokens: list[int]) -> np.ndarray:
    return np.asarray(tokens, dtype=np.intc)


# -- bookkeeping -----------------------------------------------------------------------------


def test_common_prefix() -> None:
    assert common_prefix(_arr([1, 2, 3]), _arr([1, 2, 4])) == 2
    assert common_prefix(_arr([1, 2]), _arr([1, 2, 3])) == 2
    assert common_prefix(_arr([]), _arr([1])) == 0
    assert common_prefix(_arr([5]), _arr([1])) == 0


def test_the_longest_prefix_wins_and_becomes_most_recent() -> None:
    cache = PrefixLRU(budget_bytes=1000)
    a, b = _state([1, 2, 3, 4]), _state([1, 2, 9, 9, 9])
    cache.put(a)
    cache.put(b)
    assert cache.longest(_arr([1, 2, 3, 4, 5]), None) == (a, 4)
    assert cache.longest(_arr([1, 2, 9, 9]), None) == (b, 4)
    assert cache.longest(_arr([7]), None) == (None, 0)
    # a was used last but one: with room for two, a third entry evicts the least recent (a)
    cache.longest(_arr([1, 2, 9]), None)
    cache.put(_state([3, 3, 3], nbytes=900))
    found, shared = cache.longest(_arr([1, 2, 3, 4]), None)
    assert found is b and shared == 2  # a is gone
    assert cache.stats.evictions == 1 and cache.stats.bytes <= 1000


def test_the_budget_is_never_exceeded_and_an_oversized_state_is_not_kept() -> None:
    cache = PrefixLRU(budget_bytes=250)
    for i in range(10):
        cache.put(_state([i, i, i]))
        assert cache.stats.bytes <= 250
    assert len(cache) == 2 and cache.stats.evictions == 8
    assert cache.put(_state([42], nbytes=251)) is False
    assert cache.stats.oversize == 1 and len(cache) == 2


def test_a_longer_state_of_the_same_conversation_replaces_its_prefix() -> None:
    cache = PrefixLRU(budget_bytes=10_000)
    cache.put(_state([1, 2, 3]))
    cache.put(_state([1, 2, 3, 4, 5]))
    assert len(cache) == 1 and cache.stats.evictions == 0
    assert cache.covers(_arr([1, 2, 3]), None) and cache.covers(_arr([1, 2, 3, 4, 5]), None)
    assert not cache.covers(_arr([1, 2, 3, 4, 5, 6]), None)


def test_states_are_only_found_under_their_own_adapter() -> None:
    cache = PrefixLRU(budget_bytes=10_000)
    lora = _state([1, 2, 3, 4], adapter="specialist.gguf")
    cache.put(lora)
    cache.put(_state([1, 2, 3, 4, 5]))  # the base model's state does not replace the adapter's
    assert cache.longest(_arr([1, 2, 3, 4]), "specialist.gguf") == (lora, 4)
    assert cache.longest(_arr([1, 2, 3, 4]), "other.gguf") == (None, 0)
    assert cache.longest(_arr([1, 2, 3, 4]), None)[1] == 4
    assert not cache.covers(_arr([1, 2, 3, 4]), "other.gguf")


def test_prompt_cache_mb_is_validated_in_the_fleet_file() -> None:
    assert parse_fleet({"rung": [dict(SMOL, prompt_cache_mb=0)]}).rungs[0].prompt_cache_mb == 0
    for bad in (-1, 1.5, True, "1G"):
        with pytest.raises(FleetError, match="prompt_cache_mb"):
            parse_fleet({"rung": [dict(SMOL, prompt_cache_mb=bad)]})


# -- with the real model ---------------------------------------------------------------------

FACTS = " ".join(
    f"Fact {i}: the {w} is number {i * 7 % 13}." for i, w in enumerate(["cat", "dog", "owl"] * 20)
)
PARAMS = GenerationParams(max_tokens=8)


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    path: Path = parse_fleet({"rung": [dict(SMOL)]}).rungs[0].resolve_path()
    return load_model(path, n_ctx=3072, n_threads=2)


@pytest.fixture
def fresh(model: LoadedModel) -> LoadedModel:
    """The model with an empty cache and an empty working sequence."""
    model.prompt_cache = PrefixLRU(budget_bytes=0)
    model.llm.n_tokens = 0
    model.prompt_cache.resident_prompt = 0
    return model


def _conversation(topic: str, hops: int) -> list[list[dict[str, Any]]]:
    """Hops of one conversation: each one's messages extend the previous hop's."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": f"You answer questions about {topic}. {FACTS}"},
    ]
    out = []
    for h in range(hops):
        messages = [
            *messages,
            {"role": "user", "content": f"Question {h} about {topic}: which number is the owl?"},
        ]
        out.append(messages)
        messages = [*messages, {"role": "assistant", "content": f"Answer {h}."}]
    return out


def _interleave(backend: LlamaCppBackend, hops: int = 3) -> list[Any]:
    a, b = _conversation("animals", hops), _conversation("numbers", hops)
    return [backend.generate(conv[h], None, PARAMS) for h in range(hops) for conv in (a, b)]


def test_two_interleaved_conversations_both_hit_the_cache(fresh: LoadedModel) -> None:
    gens = _interleave(LlamaCppBackend("smol-cache", fresh, prompt_cache_mb=256))
    stats = fresh.prompt_cache.stats
    # hops 2 and 3 of each conversation restore their own previous hop
    assert stats.hits == 4 and stats.restore_failures == 0
    for g in gens[2:]:
        assert g.raw["prompt_cache"]["restored"] > 0
        assert g.cached_prompt_tokens >= 0.9 * g.prompt_tokens
    assert stats.bytes <= 256 << 20


def test_outputs_are_identical_with_and_without_the_cache(fresh: LoadedModel) -> None:
    without = [g.text for g in _interleave(LlamaCppBackend("smol-nocache", fresh, prompt_cache_mb=0))]
    assert fresh.prompt_cache.stats.hits == 0 and len(fresh.prompt_cache) == 0
    fresh.llm.n_tokens = 0
    cached = [g.text for g in _interleave(LlamaCppBackend("smol-cache", fresh, prompt_cache_mb=256))]
    assert fresh.prompt_cache.stats.hits == 4
    assert cached == without


def test_a_small_budget_evicts_and_never_grows_past_it(fresh: LoadedModel) -> None:
    backend = LlamaCppBackend("smol-small", fresh, prompt_cache_mb=256)
    convs = [_conversation(t, 2) for t in ("cats", "dogs", "owls")]
    backend.generate(convs[0][0], None, PARAMS)
    backend.generate(convs[1][0], None, PARAMS)  # the switch saves the first conversation
    one_state = fresh.prompt_cache.stats.bytes
    assert one_state > 0
    fresh.prompt_cache.budget_bytes = int(1.5 * one_state)  # room for one conversation only
    backend.generate(convs[2][0], None, PARAMS)
    for conv in convs:
        backend.generate(conv[1], None, PARAMS)
        assert fresh.prompt_cache.stats.bytes <= fresh.prompt_cache.budget_bytes
    stats = fresh.prompt_cache.stats
    assert stats.evictions >= 2 and len(fresh.prompt_cache) == 1


def test_a_failed_restore_falls_back_to_evaluating_the_prompt(fresh: LoadedModel) -> None:
    backend = LlamaCppBackend("smol-cache", fresh, prompt_cache_mb=256)
    (first,) = _conversation("animals", 1)
    expected = backend.generate(first, None, PARAMS).text
    tokens = np.asarray(backend.render(first, None)[0], dtype=np.intc)
    garbage = bytes(range(256)) * 8
    import ctypes

    buf = (ctypes.c_uint8 * len(garbage)).from_buffer_copy(garbage)
    fresh.prompt_cache = PrefixLRU(budget_bytes=256 << 20)
    fresh.prompt_cache.put(SavedState(tokens, None, buf, len(garbage)))  # a corrupt saved state
    fresh.llm.n_tokens = 0
    again = backend.generate(first, None, PARAMS)
    assert again.text == expected
    assert again.raw["prompt_cache"]["failed"] == 1 and fresh.prompt_cache.stats.restore_failures == 1
    assert len(fresh.prompt_cache) == 0  # the corrupt entry is gone


def test_an_oversized_conversation_still_fails_with_context_overflow(fresh: LoadedModel) -> None:
    backend = LlamaCppBackend("smol-cache", fresh, prompt_cache_mb=256)
    with pytest.raises(BackendError) as err:
        backend.generate([{"role": "user", "content": FACTS * 8}], None, PARAMS)
    assert err.value.code == "context_overflow"


def test_a_new_conversation_restores_the_system_prompt_another_one_left(fresh: LoadedModel) -> None:
    """Agents of one kind share their instructions and tools: a new conversation starts from
    the saved state of another one with the same system prompt, not from an empty context."""
    backend = LlamaCppBackend("smol-cache", fresh, prompt_cache_mb=256)
    first = _conversation("animals", 1)[0]
    backend.generate(first, None, PARAMS)
    backend.generate(_conversation("numbers", 1)[0], None, PARAMS)  # another agent in between
    newcomer = [first[0], {"role": "user", "content": "A different question: which number is the cat?"}]
    g = backend.generate(newcomer, None, PARAMS)
    system_tokens = len(backend.tokenize(first[0]["content"]))
    assert g.raw["prompt_cache"]["restored"] >= system_tokens
    assert g.cached_prompt_tokens >= system_tokens
