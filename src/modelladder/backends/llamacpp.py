"""A local GGUF model through llama-cpp-python, constrained token by token by llguidance.

Why a decode loop of our own instead of ``Llama.create_chat_completion``:
- the contract's grammar is applied as a token mask computed by llguidance (~15 us per
  token here), not llama-cpp-python's GBNF sampler (measured 64 s p90 per tool call);
- tokens the grammar forces are fed to the model in one batch instead of one by one;
- we need, per generated token, the log-probability under the *unconstrained*
  distribution and whether the model had a real choice there -- the confidence gate's input;
- the KV cache keeps the longest shared prompt prefix between calls (system prompt and
  tool list), so a step's fixed instructions are evaluated once, not on every call.

One loaded model (and its llguidance tokenizer) is cached per process per GGUF file and
shared by every rung and adapter that uses it (:mod:`.loaded_model`); a lock serialises
generations on it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import llama_cpp
import llguidance
import numpy as np

from modelladder.backends.adapters import load_adapter, set_adapter
from modelladder.backends.base import BackendError, Generation, GenerationParams, safe_prefix_len
from modelladder.backends.loaded_model import LoadedModel, load_model
from modelladder.backends.prompt_cache import (
    DEFAULT_BUDGET_MB,
    common_prefix,
    restore_sequence,
    save_sequence,
)
from modelladder.backends.prompting import prepare_messages, render_transcript
from modelladder.contracts.checks import user_text

if TYPE_CHECKING:
    from modelladder.contracts.base import Contract
    from modelladder.fleet_types import Rung

__all__ = ["LlamaCppBackend", "LoadedModel", "load_model"]


def _log_softmax_at(logits: np.ndarray, index: int) -> float:
    m = float(logits.max())
    with np.errstate(under="ignore"):
        return float(logits[index] - m - np.log(np.exp(logits - m).sum()))


class LlamaCppBackend:
    """``generate`` for one rung on a (shared) loaded model. ``prompt_format`` is
    ``chat_template`` (the GGUF's own) or ``few_shot`` (a plain transcript, for base models)."""

    def __init__(
        self,
        name: str,
        model: LoadedModel,
        prompt_format: str = "chat_template",
        adapter: str | None = None,
        ground_strings: bool = False,
        prompt_cache_mb: int = DEFAULT_BUDGET_MB,
    ):
        self.name = name
        self.model = model
        self.adapter = adapter
        self.ground_strings = ground_strings
        # The cache lives on the shared model; its budget is the largest any rung asks for,
        # and a rung with 0 neither saves nor restores (today's single working sequence).
        self.use_prompt_cache = prompt_cache_mb > 0
        with model.lock:
            model.prompt_cache.budget_bytes = max(model.prompt_cache.budget_bytes, prompt_cache_mb << 20)
        if prompt_format == "chat_template" and model.formatter is None:
            prompt_format = "few_shot"  # no template in the GGUF: a base model
        self.prompt_format = prompt_format

    @classmethod
    def from_rung(cls, rung: Rung) -> LlamaCppBackend:
        from modelladder.fleet_types import FleetError

        try:
            path = rung.resolve_path()
        except FleetError as exc:
            raise BackendError("model_missing", str(exc)) from exc
        return cls(
            rung.name,
            load_model(path, rung.n_ctx, rung.n_threads),
            rung.prompt_format,
            rung.adapter,
            ground_strings=rung.ground_strings,
            prompt_cache_mb=rung.prompt_cache_mb,
        )

    def preload(self) -> None:
        """Load this rung's LoRA adapter now (the model is loaded already), so a wrong adapter
        file is one clear error before a run instead of a failed attempt per request."""
        if self.adapter is not None:
            load_adapter(self.model, self.adapter)

    # -- prompt ---------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` as it appears inside a prompt or an answer (no BOS, special
        tokens recognised): how an answer continues a rendered prompt."""
        return list(self.model.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    @property
    def eos_token(self) -> int:
        """The model's end-of-sequence token, the one a finished answer ends with."""
        return int(self.model.llm.token_eos())

    def render(
        self, messages: list[dict[str, Any]], contract: Contract | None
    ) -> tuple[list[int], list[str]]:
        """Token ids of the prompt, and the stop strings of this format."""
        plain = prepare_messages(messages, contract)
        llm = self.model.llm
        if self.prompt_format == "chat_template":
            resp = self.model.formatter(messages=plain)
            text, stops = (
                resp.prompt,
                list(resp.stop or []) if isinstance(resp.stop, list) else [resp.stop] if resp.stop else [],
            )
        else:
            text, stops = render_transcript(plain)
            text += "\n"
        add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "true") == "true"
        return llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True), stops

    def _matcher(
        self, contract: Contract | None, messages: list[dict[str, Any]]
    ) -> llguidance.LLMatcher | None:
        if contract is None:
            return None
        if self.ground_strings:
            # Decoding only: the prompt shows the contract as declared, validation uses it too.
            grammar = contract.grounded_grammar(user_text(messages, normalise=False))
        else:
            grammar = contract.grammar()
        matcher = llguidance.LLMatcher(self.model.tokenizer, grammar)
        if matcher.is_error():
            raise BackendError("internal", f"contract grammar rejected by llguidance: {matcher.get_error()}")
        return matcher

    def _allowed(self, matcher: llguidance.LLMatcher, mask: np.ndarray) -> np.ndarray:
        """The grammar's next-token mask as one bool per vocabulary entry (``mask`` is a
        reusable int32 buffer of ``ceil(n_vocab / 32)`` words)."""
        matcher.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
        return np.unpackbits(mask.view(np.uint8), bitorder="little")[: self.model.n_vocab].astype(bool)

    # -- KV cache ---------------------------------------------------------------------------
    def _feed_prompt(self, tokens: list[int]) -> tuple[int, dict[str, int]]:
        """Evaluate the prompt, reusing the longest prefix already in the KV cache or, when a
        saved state of another conversation shares more of it, restoring that state first
        (:mod:`.prompt_cache`). Returns how many prompt tokens were not evaluated, and what
        the prompt cache did (``restored`` tokens, ``saved`` 0/1, ``failed`` 0/1)."""
        llm = self.model.llm
        target = np.asarray(tokens, dtype=np.intc)
        usable = target[: len(tokens) - 1]  # always evaluate >= 1 token to get fresh logits
        prefix = common_prefix(np.asarray(llm.input_ids[: llm.n_tokens]), usable)
        info = {"restored": 0, "saved": 0, "failed": 0}
        cache = self.model.prompt_cache
        if self.use_prompt_cache and cache.enabled:
            entry, shared = cache.longest(usable, self.adapter)
            restore = entry is not None and shared >= prefix + cache.min_gain
            # Prompt tokens of the working sequence this prompt would overwrite (a generated
            # tail that re-renders differently is not worth a copy of the whole state).
            lost = min(int(llm.n_tokens), cache.resident_prompt) - prefix
            if restore or lost >= cache.min_gain:
                # The working sequence is about to be overwritten: keep it for its next hop.
                info["saved"] = int(self._save_resident())
            if restore and entry is not None:
                ok = restore_sequence(llm._ctx.ctx, entry)
                cache.restored(entry, ok, shared)
                if ok:
                    llm.input_ids[: len(entry.tokens)] = entry.tokens
                    llm.n_tokens = len(entry.tokens)
                    prefix = info["restored"] = shared
                else:  # incompatible state: evaluate the prompt instead, and say so
                    prefix, info["failed"] = 0, 1
            else:
                cache.stats.misses += 1
        llm.n_tokens = prefix
        llm.eval(tokens[prefix:])
        cache.resident_prompt = len(tokens)
        return prefix, info

    def _save_resident(self) -> bool:
        """Save the working sequence's state to the prompt cache, unless it holds nothing
        worth keeping or a state covering it is saved already."""
        llm = self.model.llm
        cache = self.model.prompt_cache
        n = int(llm.n_tokens)
        if n < cache.min_gain:
            return False
        resident = np.asarray(llm.input_ids[:n], dtype=np.intc)
        if cache.covers(resident, self.model.active_adapter):
            return False
        ctx = llm._ctx.ctx
        # cells past n_tokens (an unfinished evaluation) are not part of this prompt
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, n, -1)
        state = save_sequence(ctx, resident, self.model.active_adapter)
        return state is not None and cache.put(state)

    def _logits(self) -> np.ndarray:
        llm = self.model.llm
        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,)).copy()

    # -- generation -----------------------------------------------------------------------
    def generate(
        self, messages: list[dict[str, Any]], contract: Contract | None, params: GenerationParams
    ) -> Generation:
        with self.model.lock:
            decide = getattr(contract, "decision_contract", None)
            first_pass = decide(messages) if callable(decide) else None
            if first_pass is None:
                return self._generate(messages, contract, params)
            return self._call_or_answer(messages, contract, first_pass, params)

    def _call_or_answer(
        self, messages: list[dict[str, Any]], contract: Any, first_pass: Contract, params: GenerationParams
    ) -> Generation:
        """Call or answer in two passes (see ``ToolCalls.decision_contract``): calls or a
        decline first; on a decline, the answer. The generation is the answer, with the
        tokens and time of both passes."""
        first = self._generate(messages, first_pass, params)
        if first_pass.decision(first.text) != "decline" or first.finish_reason == "length":  # type: ignore[attr-defined]
            return first
        second = self._generate(messages, contract.answer_only(), params)
        second.prompt_tokens += first.prompt_tokens
        second.cached_prompt_tokens += first.cached_prompt_tokens
        second.completion_tokens += first.completion_tokens
        second.latency_s += first.latency_s
        second.raw["declined_first"] = first.text
        # the choice that mattered was the first pass's: decline (and answer) rather than call
        second.raw["decision_logprob"] = first.raw.get("decision_logprob")
        second.raw["prompt_cache"] = {
            k: first.raw["prompt_cache"][k] + second.raw["prompt_cache"][k]
            for k in second.raw["prompt_cache"]
        }
        return second

    def _generate(
        self, messages: list[dict[str, Any]], contract: Contract | None, params: GenerationParams
    ) -> Generation:
        t0 = time.perf_counter()
        deadline = t0 + params.timeout_s if params.timeout_s else None
        llm = self.model.llm
        tokens, stops = self.render(messages, contract)
        n_ctx = llm.n_ctx()
        if len(tokens) >= n_ctx - 8:
            raise BackendError(
                "context_overflow", f"{self.name}: prompt is {len(tokens)} tokens, the context holds {n_ctx}"
            )
        max_new = min(params.max_tokens, n_ctx - len(tokens) - 1)
        matcher = self._matcher(contract, messages)
        self._select_adapter()
        reused, cache_info = self._feed_prompt(tokens)
        rng = np.random.default_rng(params.seed)
        out: list[int] = []
        logprobs: list[float] = []
        free: list[bool] = []
        finish = "length"
        mask = np.zeros((self.model.n_vocab + 31) // 32, dtype=np.int32)  # the grammar's bitmask, reused
        # Stop strings end free text: a free-text step, or the text branch of call-or-answer
        # (the grammar leaves that branch open-ended, the turn marker closes it).
        free_text = matcher is None or getattr(contract, "answer", False) is True
        watch_stops = bool(stops) and free_text
        emit = params.on_text if free_text else None
        sent = 0  # characters of free text handed to ``emit`` so far
        decision: float | None = None  # log-probability of the first non-layout real choice
        while len(out) < max_new:
            if deadline is not None and time.perf_counter() > deadline:
                raise BackendError(
                    "timeout", f"{self.name}: no complete answer within {params.timeout_s:.2f}s"
                )
            if matcher is not None:
                if matcher.is_stopped():
                    finish = "stop"
                    break
                forced = matcher.compute_ff_tokens()
                if forced:
                    forced = forced[: max_new - len(out)]
                    if not matcher.consume_tokens(forced):
                        break  # grammar bug: stop, validation will fail the output
                    out.extend(forced)
                    logprobs.extend([0.0] * len(forced))
                    free.extend([False] * len(forced))
                    if matcher.is_stopped():
                        finish = "stop"
                        break
                    llm.eval(forced)
                    continue
            logits = self._logits()
            allowed_count = self.model.n_vocab
            if matcher is not None:
                allowed = self._allowed(matcher, mask)
                allowed_count = int(allowed.sum())
                if allowed_count == 0:
                    break
                masked = np.where(allowed, logits, -np.inf)
            else:
                masked = logits
            tok = self._sample(masked, params.temperature, rng)
            if decision is None and allowed_count > 1 and self._visible(tok):
                decision = _log_softmax_at(masked, tok)  # the first real choice that is not layout
            # Confidence is the probability among what the contract allows (the model's
            # belief about the value), counted only on "value tokens": a real choice
            # (several tokens allowed) of a token carrying a letter or digit, so layout
            # choices such as whitespace and brackets do not dilute or dominate it.
            logprobs.append(_log_softmax_at(masked, tok))
            free.append(allowed_count > 1 and bool(self.model.wordy[tok]))
            if matcher is not None and not matcher.consume_token(tok):
                break
            if tok in self.model.eos:
                finish = "stop"
                logprobs.pop()
                free.pop()
                break
            out.append(tok)
            if watch_stops or emit is not None:
                text_so_far = llm.detokenize(out).decode("utf-8", "ignore")
                if watch_stops and any(s in text_so_far for s in stops):
                    finish = "stop"
                    break
                if emit is not None:
                    sent = self._emit(emit, text_so_far, sent, stops)
            llm.eval([tok])
        text = llm.detokenize(out).decode("utf-8", "replace")
        for s in stops:
            if s and s in text:
                text = text[: text.index(s)]
        return Generation(
            text=text.strip() if matcher is None else text,
            prompt_tokens=len(tokens),
            completion_tokens=len(out),
            latency_s=time.perf_counter() - t0,
            finish_reason=finish,
            token_logprobs=logprobs,
            free=free,
            cached_prompt_tokens=reused,
            raw={
                "prompt_cache": cache_info,
                **({"decision_logprob": decision} if matcher is not None else {}),
            },
        )

    def _visible(self, tok: int) -> bool:
        """Does the token show anything but whitespace (a choice that is not layout)?"""
        return bool(self.model.llm.detokenize([tok]).strip())

    @staticmethod
    def _emit(emit: Any, text: str, sent: int, stops: list[str]) -> int:
        """Hand the new free text to ``emit``: from the first non-blank character, never a
        tail that may turn into a stop string, never a call (text starting with ``<``)."""
        start = len(text) - len(text.lstrip())
        if start == len(text) or text[start] == "<":
            return sent
        upto = safe_prefix_len(text, stops)
        if upto > max(sent, start):
            emit(text[max(sent, start) : upto])
            return upto
        return sent

    @staticmethod
    def _sample(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
        if temperature <= 0:
            return int(np.argmax(logits))
        z = logits / temperature
        z = z - z.max()
        p = np.exp(z)
        p /= p.sum()
        return int(rng.choice(len(p), p=p))

    def _select_adapter(self) -> None:
        """Activate this rung's LoRA adapter (or none) on the shared model."""
        if self.model.active_adapter == self.adapter:
            return
        if self.use_prompt_cache and self.model.prompt_cache.enabled:
            self._save_resident()  # computed under the old adapter, kept under its name
        set_adapter(self.model, self.adapter)
