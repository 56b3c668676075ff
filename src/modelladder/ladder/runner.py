"""The ladder: run a step on the smallest eligible rung, validate, gate, escalate.

The I/O (calling backends, the clock, writing traces) lives here; every decision is
delegated to the pure functions in :mod:`modelladder.ladder.policy`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from modelladder.backends.base import Backend, BackendError, GenerationParams
from modelladder.contracts.base import Verdict
from modelladder.contracts.tools import ANSWER_STRING_CAP, ToolCalls
from modelladder.ladder.cooldown import CooldownPolicy, Cooldowns
from modelladder.ladder.gate import Gate, GateVerdict, SkipPredictor
from modelladder.ladder.keys import step_key
from modelladder.ladder.loops import LOOP_REASON, repeated_calls, turn_position
from modelladder.ladder.outcome import (
    SKIP_REASON,
    SKIPPED,
    Attempt,
    Confidence,
    Resolved,
    StepResult,
    Unresolved,
)
from modelladder.ladder.policy import Policy, Stop, judge, may_skip, next_action, shadow_rung
from modelladder.ladder.shaping import RungView, Shaper, ShapeRequest
from modelladder.ladder.step import Step

if TYPE_CHECKING:
    from modelladder.fleet_types import Fleet, Rung

__all__ = [
    "AttemptHook", "BackendFactory", "Ladder", "RecordHook", "TraceSink", "derive_episode_id",
    "validate_messages",
]  # fmt: skip

BackendFactory = Callable[["Rung"], Backend]
AttemptHook = Callable[[Attempt], None]
# (the finished run, None or why the sink refused it), after every record: the caller decides
# what a lost trace means
RecordHook = Callable[[StepResult, "Exception | None"], None]
TextHook = Callable[[str, str], None]  # (rung name, new free text): live streaming
log = logging.getLogger("modelladder.ladder")


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def derive_episode_id(messages: list[dict[str, Any]]) -> str:
    """An episode (one agent conversation) id from the conversation's prefix: every message up
    to and including the first user message. Later turns of the same conversation repeat that
    prefix, so they land in the same episode when the caller names none."""
    prefix: list[dict[str, Any]] = []
    for m in messages:
        prefix.append({"role": m.get("role"), "content": m.get("content")})
        if m.get("role") == "user":
            break
    return "ep-" + _digest(prefix)


@dataclasses.dataclass(frozen=True)
class _ShapeContext:
    """What the shaper needs of the run beside the attempt: the step key, the policy in force,
    and the ids that keep the run's own conversation out of its retrieved examples."""

    key: str
    policy: Policy
    run_id: str
    episode_id: str | None


def _loop_fallback_contract(contract: Any, attempts: list[Attempt], prompt: list[dict[str, Any]]) -> Any:
    """What the loop guard's last word decodes against: the answer branch alone where the step
    may answer; for a forced call (``tool_choice="required"``) the other tools, without those
    whose calls only repeated answered ones (pydantic-ai's output tool is then what is left
    to call); ``None`` when neither applies."""
    if not isinstance(contract, ToolCalls):
        return None
    answer_only = contract.answer_only()
    if answer_only is not None:
        return answer_only
    if contract.tool_choice != "required":
        return None
    repeated = {n for a in attempts if a.repeated_call and isinstance(a.value, list)
                for n in repeated_calls(a.value, prompt)}  # fmt: skip
    rest = [t["name"] for t in contract.tools if t["name"] not in repeated]
    if not (repeated and rest):
        return None
    # measured: SmolLM2 and Gemma, pushed onto pydantic-ai's final_result, wrote its answer
    # string until max_tokens, and Gemma called final_result ten times over in one list;
    # capped strings (decoding only) and a single call let the last word close
    return dataclasses.replace(contract.offering(rest), string_cap=ANSWER_STRING_CAP, parallel=False)


def _draw(run_id: str) -> float:
    """A number in [0, 1) fixed by the run id: which runs are shadowed is reproducible."""
    return int(hashlib.sha256(run_id.encode()).hexdigest()[:8], 16) / 2**32


@runtime_checkable
class TraceSink(Protocol):
    """Where the ladder sends every finished step: :class:`modelladder.traces.TraceStore`, or
    anything else with this method (a queue, a test's list). The ladder depends on this
    shape, not on the trace store, so the layers stay one-way: traces import the ladder's
    outcome types, never the reverse."""

    def record(self, result: StepResult) -> None: ...


def validate_messages(messages: Any) -> list[dict[str, Any]]:
    """Reject input that no model should see, with a message that says what to fix."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m:
            raise ValueError(f"messages[{i}] must be a dict with a 'role' key")
        if m["role"] not in ("system", "user", "assistant", "tool", "developer"):
            raise ValueError(
                f"messages[{i}].role {m['role']!r} is not one of system/user/assistant/tool/developer"
            )
    return [dict(m) for m in messages]


class Ladder:
    """Runs steps over a fleet. ``store`` receives every finished step (``None``: no traces).

    Backends are created lazily, once per rung, by ``backend_factory`` (the default opens
    the rung's real backend); pass ``backends={"rung-name": backend}`` to plug in others.
    ``gate`` judges contract-passing attempts; ``skip`` may pass over an edge rung before it
    runs (:class:`~modelladder.ladder.gate.SkipPredictor`); ``shaper`` changes what an edge
    rung sees. All three come from :mod:`modelladder.learning` through these seams.

    ``cooldown``: when a rung's endpoint keeps failing it is skipped for a while
    (:mod:`modelladder.ladder.cooldown`; default: only for a ``Retry-After``, so a script or a
    benchmark sees every fault); ``cooldowns`` holds that state. ``on_record``:
    called after every ``store.record`` with ``None`` or the exception it raised; without
    it the error propagates (a library caller sees it), with it the run's result is returned
    all the same (the gateway keeps answering and counts the lost trace). ``sleep``: how the ladder waits out a ``Retry-After``.
    """

    def __init__(
        self,
        fleet: Fleet | None = None,
        *,
        store: TraceSink | None = None,
        backends: Mapping[str, Backend] | None = None,
        backend_factory: BackendFactory | None = None,
        clock: Callable[[], float] = time.perf_counter,
        gate: Gate | None = None,
        shaper: Shaper | None = None,
        cooldown: CooldownPolicy | None = None,
        on_record: RecordHook | None = None,
        sleep: Callable[[float], None] = time.sleep,
        skip: SkipPredictor | None = None,
    ):
        if fleet is None:
            from modelladder.fleet import load_fleet  # lazy: reading a fleet consults the backend registry

            fleet = load_fleet()
        self.fleet = fleet
        self.store = store
        self._backends: dict[str, Backend] = dict(backends or {})
        self._factory = backend_factory
        self._clock = clock
        self.gate = gate
        self.shaper = shaper
        # a library ladder (a script, a benchmark) only honours Retry-After; the gateway also cools
        # a rung after repeated faults (GatewayConfig.cooldown_after_failures)
        self.cooldowns = Cooldowns(cooldown or CooldownPolicy(after_failures=0), clock)
        self.on_record = on_record
        self._sleep = sleep
        self.skip = skip
        self._fleet_digest = _digest([asdict(r) for r in fleet.rungs])
        self._shadow_pool: ThreadPoolExecutor | None = None
        self._shadows: list[Future[None]] = []

    def backend(self, rung: Rung) -> Backend:
        if rung.name not in self._backends:
            if self._factory is not None:
                self._backends[rung.name] = self._factory(rung)
            else:
                from modelladder.backends import open_backend

                self._backends[rung.name] = open_backend(rung)
        return self._backends[rung.name]

    def policy_for(self, step: Step, **overrides: Any) -> Policy:
        base = self.fleet.policy_for(step.name)
        if step.policy is not None:
            base = base.merged(**step.policy.__dict__)
        return base.merged(**overrides)

    def run(
        self,
        step: Step,
        messages: list[dict[str, Any]],
        *,
        policy: Policy | None = None,
        tags: Mapping[str, str] | None = None,
        run_id: str | None = None,
        on_attempt: AttemptHook | None = None,
        params: GenerationParams | None = None,
        episode_id: str | None = None,
        on_text: TextHook | None = None,
    ) -> Resolved | Unresolved:
        """Run ``step`` on ``messages``. Never raises for a model failure: the result is
        :class:`Resolved` (validated value) or :class:`Unresolved` (every attempt, no value).
        ``on_text(rung, text)`` gets free text as backends decode it (see
        :class:`GenerationParams`); the caller decides whether showing it early is safe."""
        messages = validate_messages(messages)
        pol = policy if policy is not None else self.policy_for(step)
        base_params = params or GenerationParams(max_tokens=step.max_tokens)
        prompt = step.with_system(messages)
        rungs = [r for r in self.fleet.rungs if r.step in (None, step.name)]
        attempts: list[Attempt] = []
        start = self._clock()
        run_id = run_id or uuid.uuid4().hex
        digest = step.contract.digest() if step.contract is not None else None
        contract = (
            {"kind": step.contract.kind, "spec": step.contract.spec()} if step.contract is not None else None
        )
        key = step_key(step.name, digest)
        # The trace keeps the messages as the model got them (with the step's system text)
        # and the contract itself: together they are a complete training example.
        common: dict[str, Any] = dict(
            run_id=run_id,
            step=step.name,
            contract_digest=digest,
            messages=prompt,
            tags=dict(tags or {}),
            contract=contract,
            step_key=key,
            episode_id=episode_id or derive_episode_id(messages),
        )
        gate_versions: list[int] = []  # the calibrations that judged this run's attempts
        skip_versions: list[int] = []  # the skip calibrations that passed over a rung
        base_params = dataclasses.replace(base_params, step_key=key)
        shape = _ShapeContext(key, pol, run_id, common["episode_id"])

        while True:
            action = next_action(pol, rungs, attempts, self._clock() - start, self.cooldowns.cooling())
            if isinstance(action, Stop):
                forced = self._loop_fallback(step, prompt, attempts, base_params, pol, on_attempt, action,
                                             self._clock() - start, on_text, gate_versions, shape)  # fmt: skip
                if forced is not None and forced.accepted:
                    result: Resolved | Unresolved = Resolved(
                        **common, attempts=attempts, latency_s=self._clock() - start
                    )
                    break
                result = Unresolved(
                    **common, attempts=attempts, latency_s=self._clock() - start, reason=action.reason
                )
                break
            if self._skipped(step, prompt, rungs, action.rung, attempts, pol, shape, contract, on_attempt,
                             skip_versions):  # fmt: skip
                continue
            if action.wait_s > 0:  # the rung's Retry-After, within the budget (policy.next_action)
                self._sleep(action.wait_s)
            attempt = self._judged(step, prompt, action.rung, attempts, base_params, action.timeout_s, pol, on_attempt,
                                   on_text, gate_versions, shape)  # fmt: skip
            if attempt.accepted:
                result = Resolved(**common, attempts=attempts, latency_s=self._clock() - start)
                break
        gate_version = gate_versions[-1] if gate_versions else None
        result.gate_version = gate_version
        decided_by: dict[str, Any] = {
            "fleet": self._fleet_digest,
            "policy": asdict(pol),
            "gate_version": gate_version,
        }
        if skip_versions:  # only then: the digests of runs without a skip stay what they were
            decided_by["skip_version"] = skip_versions[-1]
        result.config_digest = _digest(decided_by)
        if self.store is not None:
            try:
                self.store.record(result)
            except Exception as exc:
                if self.on_record is None:
                    raise
                self.on_record(result, exc)
                return result  # no shadow check: it would label a run that is not there
            if self.on_record is not None:
                self.on_record(result, None)
            if isinstance(result, Resolved):
                self._maybe_shadow(step, prompt, rungs, pol, result, base_params)
        return result

    def _judged(
        self, step: Step, prompt: list[dict[str, Any]], rung: Rung, attempts: list[Attempt],
        params: GenerationParams, timeout_s: float | None, pol: Policy, on_attempt: AttemptHook | None,
        on_text: TextHook | None = None, gate_versions: list[int] | None = None,
        shape: _ShapeContext | None = None,
    ) -> Attempt:  # fmt: skip
        """One attempt, judged (by the calibrated gate where there is one, whose version is
        appended to ``gate_versions``), appended to ``attempts`` and reported to ``on_attempt``."""
        if on_text is not None:
            params = dataclasses.replace(params, on_text=lambda text: on_text(rung.name, text))
        view = self._view(step, prompt, rung, shape)
        attempt = self._attempt(step, prompt, rung, len(attempts), params, timeout_s, view)
        attempts.append(attempt)
        digest = step.contract.digest() if step.contract is not None else None
        verdict = self._assess(step_key(step.name, digest), digest, attempt)
        if verdict is not None and gate_versions is not None:
            gate_versions.append(verdict.version)
        reason = judge(attempt, pol, verdict)
        if reason is None:
            attempt.accepted = True
        else:
            attempt.escalation_reason = reason
        if on_attempt is not None:
            on_attempt(attempt)
        return attempt

    def _skipped(
        self, step: Step, prompt: list[dict[str, Any]], rungs: list[Rung], rung: Rung, attempts: list[Attempt],
        pol: Policy, shape: _ShapeContext, contract: dict[str, Any] | None, on_attempt: AttemptHook | None,
        versions: list[int],
    ) -> bool:  # fmt: skip
        """Pass over ``rung`` when the skip predictor says it will fail this request: a
        recorded attempt that made no backend call (``error="skipped"``). A failing predictor
        skips nothing."""
        if self.skip is None or not may_skip(pol, rungs, rung, attempts, _draw(shape.run_id + ":explore")):
            return False
        try:
            verdict = self.skip.predict_skip(shape.key, contract, prompt, rung.name)
        except Exception as exc:
            log.error("skip predictor failed on step %s (%s: %s); trying %s", shape.key, type(exc).__name__, exc,
                      rung.name)  # fmt: skip
            return False
        if verdict is None or not verdict.skip:
            return False
        attempt = Attempt(index=len(attempts), rung=rung.name, placement=rung.placement, error=SKIPPED,
                          escalation_reason=SKIP_REASON,
                          error_detail=f"predicted failure {verdict.p_fail:.3f} >= {verdict.threshold:.3f} "
                                       f"(skip calibration version {verdict.version})")  # fmt: skip
        attempts.append(attempt)
        versions.append(verdict.version)
        if on_attempt is not None:
            on_attempt(attempt)
        return True

    def _loop_fallback(
        self, step: Step, prompt: list[dict[str, Any]], attempts: list[Attempt], params: GenerationParams,
        pol: Policy, on_attempt: AttemptHook | None, stop: Stop, elapsed_s: float, on_text: TextHook | None,
        gate_versions: list[int] | None = None, shape: _ShapeContext | None = None,
    ) -> Attempt | None:  # fmt: skip
        """The loop guard's last word: when every rung is spent and some rungs only repeated an
        answered call, those rungs, smallest first, answer with calls ruled out
        (``ToolCalls.answer_only``; for a forced call, the repeated tools ruled out:
        :func:`_loop_fallback_contract`) until one answer passes, so an agent loop ends with a
        reply. Returns the last such attempt; ``None`` (no attempt) when the ladder stopped
        for another reason (attempts, budget), when no attempt looped, or when the step
        cannot answer."""
        contract = step.contract
        looped = list(dict.fromkeys(a.rung for a in attempts if a.escalation_reason == LOOP_REASON))
        fallback = _loop_fallback_contract(contract, attempts, prompt) if looped else None
        if fallback is None or stop.reason != "exhausted" or any(a.forced_answer for a in attempts):
            return None
        forced_step = dataclasses.replace(step, contract=fallback)
        attempt = None
        for name in looped:
            if pol.max_attempts is not None and len(attempts) >= pol.max_attempts:
                break
            spent = elapsed_s + sum(a.latency_s for a in attempts if a.forced_answer)
            if pol.latency_budget_s is not None and spent >= pol.latency_budget_s:
                break
            remaining = None if pol.latency_budget_s is None else pol.latency_budget_s - spent
            rung = next(r for r in self.fleet.rungs if r.name == name)
            attempt = self._judged(forced_step, prompt, rung, attempts, params, remaining, pol, on_attempt, on_text,
                                   gate_versions, shape)  # fmt: skip
            attempt.forced_answer = True
            if attempt.accepted:
                break
        return attempt

    def _view(self, step: Step, prompt: list[dict[str, Any]], rung: Rung,
              shape: _ShapeContext | None) -> RungView | None:  # fmt: skip
        """What the shaper shows an edge rung instead of the step as sent (``None``: as sent).
        Only edge rungs, never a memo, only where the policy asks for it."""
        if self.shaper is None or shape is None or not shape.policy.shapes_edge:
            return None
        if rung.placement != "edge" or rung.backend == "memo":
            return None
        try:
            return self.shaper.shape(ShapeRequest(step, shape.key, prompt, rung, shape.policy, shape.run_id,
                                                  shape.episode_id))  # fmt: skip
        except Exception as exc:  # learning may make the edge smarter, never break it
            log.error("shaper failed on step %s, rung %s (%s: %s); attempt goes ahead unshaped", shape.key,
                      rung.name, type(exc).__name__, exc)  # fmt: skip
            return None

    def _assess(self, key: str, digest: str | None, attempt: Attempt) -> GateVerdict | None:
        """The gate's verdict on a contract-passing attempt; a failing gate escalates, never crashes."""
        if self.gate is None or attempt.verdict is None or not attempt.verdict.ok:
            return None
        try:
            return self.gate.assess(key, digest, attempt)
        except Exception as exc:
            log.error("gate failed on step %s (%s: %s); escalating", key, type(exc).__name__, exc)
            return GateVerdict(False, "gate:error", version=0)

    # -- shadow checks --------------------------------------------------------------------------

    def _maybe_shadow(
        self,
        step: Step,
        prompt: list[dict[str, Any]],
        rungs: list[Rung],
        pol: Policy,
        result: Resolved,
        params: GenerationParams,
    ) -> None:
        """Queue a background check of an accepted edge answer (the caller already has it)."""
        rung = shadow_rung(pol, rungs, result.accepted, _draw(result.run_id))
        if rung is None:
            return
        if self._shadow_pool is None:
            self._shadow_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelladder-shadow")
        self._shadows = [f for f in self._shadows if not f.done()]
        self._shadows.append(self._shadow_pool.submit(self._shadow, step, prompt, rung, result, params))

    def _shadow(self, step: Step, prompt: list[dict[str, Any]], rung: Rung, result: Resolved,
                params: GenerationParams) -> None:  # fmt: skip
        accepted = result.accepted
        try:
            check = self._attempt(step, prompt, rung, accepted.index + 1, params, None)
            if check.verdict is None or not check.verdict.ok:
                return  # the teacher itself failed: no label
            if step.contract is not None:
                agree = step.contract.equivalent(accepted.value, check.value)
            else:
                agree = accepted.text.strip() == check.text.strip()
            self.store.add_label(  # type: ignore[union-attr]
                result.run_id, attempt_idx=accepted.index, kind="correct", value=float(agree),
                source="teacher", note="shadow",
                detail={"rung": rung.name, "placement": rung.placement, "cost_usd": check.cost_usd,
                        "latency_s": check.latency_s, "text": check.text[:2000]},
            )  # fmt: skip
        except Exception as exc:  # a shadow check must never break anything
            log.warning("shadow check of run %s on %s failed: %s: %s", result.run_id, rung.name,
                        type(exc).__name__, exc)  # fmt: skip

    def drain_shadows(self, timeout_s: float | None = None) -> None:
        """Wait for queued shadow checks (tests, and before closing a store)."""
        for f in list(self._shadows):
            f.result(timeout=timeout_s)
        self._shadows = [f for f in self._shadows if not f.done()]

    def _attempt(
        self,
        step: Step,
        prompt: list[dict[str, Any]],
        rung: Rung,
        index: int,
        params: GenerationParams,
        timeout_s: float | None,
        view: RungView | None = None,
    ) -> Attempt:
        """One backend call, validated. With a ``view`` the rung is shown its messages and
        decodes against its contract, which also validates the output (a tool the rung was
        not offered is a contract failure); grounding checks and the loop guard still read
        the conversation as sent (``prompt``), never a retrieved example's text."""
        attempt = Attempt(index=index, rung=rung.name, placement=rung.placement)
        contract = step.contract
        shown = prompt
        if view is not None:
            shown, contract = view.messages, view.contract or step.contract
            attempt.shaping = dict(view.applied) or None
        if timeout_s is not None:
            params = dataclasses.replace(params, timeout_s=min(timeout_s, params.timeout_s or timeout_s))
        t0 = self._clock()
        try:
            gen = self.backend(rung).generate(shown, contract, params)
        except BackendError as exc:
            attempt.error, attempt.error_detail = exc.code, str(exc)
            attempt.retry_after_s = exc.retry_after_s
            attempt.latency_s = self._clock() - t0
            attempt.cost_usd = rung.cost(0, 0, attempt.latency_s)
            self.cooldowns.observe(rung.name, exc.code, exc.retry_after_s)
            return attempt
        except Exception as exc:  # a crashing backend escalates like any other failure
            attempt.error, attempt.error_detail = "internal", f"{type(exc).__name__}: {exc}"
            attempt.latency_s = self._clock() - t0
            return attempt
        self.cooldowns.observe(rung.name, None)
        attempt.text = gen.text
        attempt.prompt_tokens = gen.prompt_tokens
        attempt.completion_tokens = gen.completion_tokens
        attempt.cached_prompt_tokens = gen.cached_prompt_tokens
        attempt.latency_s = gen.latency_s
        attempt.finish_reason = gen.finish_reason
        attempt.cost_usd = rung.cost(gen.prompt_tokens, gen.completion_tokens, gen.latency_s)
        if gen.token_logprobs or gen.raw.get("decision_logprob") is not None:
            attempt.confidence = Confidence.from_logprobs(
                gen.token_logprobs, gen.free, decision_logprob=gen.raw.get("decision_logprob")
            )
        if contract is None:
            attempt.verdict = Verdict.passed(gen.text) if gen.text.strip() else Verdict.failed("empty_output")
        else:
            attempt.verdict = contract.validate(gen.text, prompt)
        if isinstance(contract, ToolCalls):
            attempt.decision = contract.decision(gen.text)
            if attempt.confidence is not None:
                start, results = turn_position(prompt)
                attempt.confidence = dataclasses.replace(
                    attempt.confidence, turn_start=float(start), tool_results=float(results)
                )
            value = attempt.verdict.value
            # Only where the step may do something else: answer, decline, or (``required``
            # with several tools) call another tool, as pydantic-ai's output tool
            # (``final_result``) asks. A named forced tool may legitimately poll again.
            may_stop = (
                contract.answers
                or contract.allow_no_call
                or (contract.tool_choice == "required" and len(contract.tools) > 1)
            )
            if may_stop and attempt.verdict.ok and isinstance(value, list) and repeated_calls(value, prompt):
                attempt.repeated_call = True
        return attempt
