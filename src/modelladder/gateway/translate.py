"""From an OpenAI chat-completions request to a ladder run: which step, which contract,
which policy, which rung it enters on.

The contract is *derived* from the request, never configured on the server: ``tools`` +
``tool_choice`` become :class:`~modelladder.contracts.ToolCalls` (``auto``: call or answer,
the answer shaped by ``response_format`` when one is given), ``response_format`` alone
becomes :class:`~modelladder.contracts.JsonSchema`, anything else is free text. That is
what lets an unmodified agent get contract-checked, smallest-first execution. A request in
the legacy ``functions``/``function_call`` form is first moved to ``tools`` (see
:mod:`modelladder.gateway.legacy`) and marked ``Plan.legacy`` for the answer's shape.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from typing import Any

from modelladder.backends.base import GenerationParams
from modelladder.contracts import ContractError, JsonSchema, ToolCalls
from modelladder.contracts.base import Contract
from modelladder.fleet import Fleet, Rung
from modelladder.gateway import legacy
from modelladder.gateway.errors import APIError
from modelladder.gateway.schemas import (
    IGNORED_FIELDS,
    ChatCompletionRequest,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
)
from modelladder.ladder.policy import Policy, eligible_rungs
from modelladder.ladder.step import Step

__all__ = ["DEFAULT_STEP", "LADDER", "Plan", "Target", "model_ids", "plan", "resolve_model"]

LADDER = "ladder"
DEFAULT_STEP = "default"


@dataclass(frozen=True)
class Target:
    """What the request's ``model`` names: a step of the ladder, or one rung (``rung``)."""

    step: str
    policy: Policy
    rung: Rung | None = None


@dataclass
class Plan:
    """Everything needed to run one request and shape its answer."""

    step: Step
    policy: Policy
    params: GenerationParams
    messages: list[dict[str, Any]]
    tags: dict[str, str]
    entry: Rung
    kind: str  # "text" | "tools" | "json"
    stop: list[str]
    stream: bool
    include_usage: bool
    legacy: bool = False  # answer with message.function_call (the request sent ``functions``)

    @property
    def streams_live(self) -> bool:
        """Whether a streamed answer may go out as it is decoded: only free text that no
        later check can reject -- a free-text request (no confidence gate, truncation
        accepted, so any non-blank text is final), or the text answer of ``tool_choice="auto"``
        (the same rules; calls and JSON answers are validated whole) -- and only without a
        latency budget (a timeout could still fail an attempt that had begun to stream)."""
        if not self.stream or self.policy.latency_budget_s is not None:
            return False
        contract = self.step.contract
        return contract is None or (isinstance(contract, ToolCalls) and contract.answer is True)


def model_ids(fleet: Fleet) -> list[str]:
    """What ``GET /v1/models`` lists: the default ladder, each named step, each rung."""
    steps = sorted(set(fleet.steps) | {r.step for r in fleet.rungs if r.step})
    return [LADDER, *(f"{LADDER}/{s}" for s in steps), *(r.name for r in fleet.rungs)]


def resolve_model(fleet: Fleet, model: str) -> Target:
    if model == LADDER:
        return Target(DEFAULT_STEP, fleet.policy_for(DEFAULT_STEP))
    if model.startswith(LADDER + "/"):
        step = model[len(LADDER) + 1 :]
        known = set(fleet.steps) | {r.step for r in fleet.rungs if r.step}
        if step in known:
            return Target(step, fleet.policy_for(step))
    for rung in fleet.rungs:
        if rung.name == model:
            # one rung, no escalation; the caller chose the model, so no confidence gate either
            pol = dataclasses.replace(
                fleet.default_policy, first_rung=rung.name, max_rung=None, edge_only=False, max_attempts=1,
                min_mean_logprob=None, min_token_logprob=None, min_decision_logprob=None,
            )  # fmt: skip
            return Target(rung.step or DEFAULT_STEP, pol, rung)
    raise APIError(
        404,
        f"The model {model!r} does not exist; use one of: {', '.join(model_ids(fleet))}",
        code="model_not_found",
        param="model",
    )


def _contract(req: ChatCompletionRequest) -> tuple[Contract | None, str]:
    """The request's contract. Cached by its JSON: building one compiles and checks a
    grammar (~2.5 ms), while agents send the same tools and schemas on every call."""
    if not req.tools and req.response_format is None and req.tool_choice is None:
        return None, "text"
    key = json.dumps(
        [
            [t.model_dump(exclude_none=True) for t in req.tools or []],
            req.tool_choice if isinstance(req.tool_choice, str | None) else req.tool_choice.model_dump(),
            req.parallel_tool_calls,
            req.response_format.model_dump(by_alias=True) if req.response_format is not None else None,
        ]
    )  # not sort_keys: property order is part of the contract (the grammar emits it)
    return _contract_from_json(key)


@functools.lru_cache(maxsize=512)
def _contract_from_json(key: str) -> tuple[Contract | None, str]:
    """Contracts are immutable, so one instance serves concurrent requests. Errors are
    raised, not cached."""
    raw_tools, choice, parallel_flag, fmt_raw = json.loads(key)
    req = ChatCompletionRequest.model_validate(
        {"messages": [{"role": "user", "content": ""}], "tools": raw_tools or None, "tool_choice": choice,
         "parallel_tool_calls": parallel_flag, "response_format": fmt_raw}
    )  # fmt: skip
    return _build_contract(req)


def _build_contract(req: ChatCompletionRequest) -> tuple[Contract | None, str]:
    tools = [t.model_dump(exclude_none=True) for t in req.tools or []]
    choice = req.tool_choice
    if choice is not None and choice != "none" and choice != "auto" and not tools:
        raise APIError(
            400, "tool_choice is only allowed when tools are specified", "invalid_value", param="tool_choice"
        )
    fmt = req.response_format
    uses_tools = bool(tools) and choice != "none"
    answer: JsonSchema | None = (
        _json_contract(fmt) if isinstance(fmt, ResponseFormatJsonObject | ResponseFormatJsonSchema) else None
    )
    if uses_tools:
        names = [t["function"]["name"] for t in tools]
        named = choice.function.name if choice is not None and not isinstance(choice, str) else None
        if named is not None and named not in names:
            raise APIError(
                400, f"tool_choice names {named!r}, which is not among the tools {names}", "invalid_value",
                param="tool_choice",
            )  # fmt: skip
        parallel = True if req.parallel_tool_calls is None else req.parallel_tool_calls
        try:
            if choice is None or choice == "auto":
                # "auto" is "call or answer": the answer is free text, or the response_format's JSON
                return ToolCalls(tools, parallel=parallel, answer=answer or True), "tools"
            # "required" / a named tool: a call, whatever response_format says about the final answer
            return ToolCalls(tools, parallel=parallel, tool_choice=named or "required"), "tools"
        except ContractError as exc:
            raise APIError(400, str(exc), "invalid_tools", param="tools") from None
        except Exception as exc:  # the grammar compiler may refuse exotic schemas in its own ways
            raise APIError(400, f"tools cannot be compiled: {exc}", "invalid_tools", param="tools") from None
    if answer is not None:
        return answer, "json"
    return None, "text"


def _json_contract(fmt: ResponseFormatJsonObject | ResponseFormatJsonSchema) -> JsonSchema:
    """``response_format`` -> :class:`JsonSchema` (or a 400 naming the schema's problem)."""
    if isinstance(fmt, ResponseFormatJsonSchema):
        spec = fmt.json_schema
        schema: dict[str, Any] = spec.schema_ if spec.schema_ is not None else {}
        name: str | None = spec.name
    else:
        schema, name = {"type": "object"}, "json_object"
    try:
        return JsonSchema(schema, name=name)
    except ContractError as exc:
        raise APIError(
            400, str(exc), "invalid_json_schema", param="response_format.json_schema.schema"
        ) from None
    except Exception as exc:
        raise APIError(
            400, f"response_format schema cannot be compiled: {exc}", "invalid_json_schema",
            param="response_format.json_schema.schema",
        ) from None  # fmt: skip


def _messages(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    out = []
    for i, m in enumerate(req.messages):
        if isinstance(m.content, list):
            for j, part in enumerate(m.content):
                if part.type != "text" or not isinstance(part.text, str):
                    raise APIError(
                        400,
                        f"messages[{i}].content[{j}]: only text content parts are supported (got {part.type!r})",
                        "unsupported_content",
                        param=f"messages[{i}].content",
                    )
        elif m.content is None and m.role not in ("assistant", "function"):
            raise APIError(
                400, f"messages[{i}]: a {m.role} message needs content", "missing_content",
                param=f"messages[{i}].content",
            )  # fmt: skip
        out.append(m.model_dump(exclude_none=True, mode="json"))
    return legacy.modern_messages(out)


def _tags(req: ChatCompletionRequest, is_legacy: bool) -> dict[str, str]:
    tags = {"via": "gateway", "model": req.model}
    if is_legacy:  # the trace holds the translated request; this says how it came in
        tags["api"] = "functions"
    if req.user:
        tags["user"] = req.user[:256]
    meta = req.metadata or {}
    if len(meta) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in meta.items()):
        raise APIError(
            400, "metadata holds at most 16 pairs, keys up to 64 and values up to 512 characters",
            "invalid_metadata", param="metadata",
        )  # fmt: skip
    for k, v in meta.items():
        tags.setdefault(k, v)
    ignored = sorted(f for f in req.model_fields_set & set(IGNORED_FIELDS) if getattr(req, f) is not None)
    if ignored:  # accepted, not honoured: the trace says so, and so does a response header
        tags["ignored"] = ",".join(ignored)
    return tags


def plan(req: ChatCompletionRequest, fleet: Fleet, *, max_tokens_limit: int, default_max_tokens: int) -> Plan:
    """Check the request beyond its types and turn it into a :class:`Plan` (or an APIError)."""
    if req.n not in (None, 1):
        raise APIError(400, "n must be 1: one validated answer per request", "invalid_value", param="n")
    is_legacy = legacy.is_legacy(req)
    req = legacy.modernize(req)
    target = resolve_model(fleet, req.model)
    try:
        contract, kind = _contract(req)
    except APIError as exc:
        if is_legacy:  # the client sent functions/function_call: name those
            raise legacy.rename_error(exc) from None
        raise
    if contract is None and target.step in fleet.contracts:
        # a step whose contract the fleet file declares (SQL, a grammar): plain-text answers
        contract, kind = fleet.contracts[target.step], "text"
    max_tokens = req.max_completion_tokens or req.max_tokens or default_max_tokens
    if max_tokens > max_tokens_limit:
        param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
        raise APIError(400, f"{param} is {max_tokens}; this gateway allows at most {max_tokens_limit}",
                       "invalid_value", param=param)  # fmt: skip
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stop) > 4 or any(not s for s in stop):
        raise APIError(400, "stop takes up to 4 non-empty strings", "invalid_value", param="stop")
    policy = target.policy
    if contract is None:
        # Free text has nothing to check but non-emptiness: the smallest rung the policy
        # allows answers, and a length cut is the caller's choice, not a failure.
        policy = dataclasses.replace(
            policy,
            min_mean_logprob=None,
            min_token_logprob=None,
            min_decision_logprob=None,
            accept_truncated=True,
        )
    elif isinstance(contract, ToolCalls) and contract.answer is True:
        # Call or answer in free text: a text answer cut by max_tokens is what OpenAI gives
        # (finish_reason "length"); a cut call fails its parse and escalates all the same.
        policy = dataclasses.replace(policy, accept_truncated=True)
    step = Step(target.step, contract=contract, max_tokens=max_tokens)
    rungs = [r for r in fleet.rungs if r.step in (None, step.name)]
    try:
        eligible = eligible_rungs(policy, rungs)
    except ValueError as exc:
        raise APIError(
            503, f"the fleet's policy for {step.name!r} is unusable: {exc}", "no_rung_available"
        ) from None
    if not eligible:
        raise APIError(503, f"no rung is eligible for {req.model!r} under its policy", "no_rung_available")
    params = GenerationParams(
        max_tokens=max_tokens, temperature=req.temperature or 0.0, seed=(req.seed or 0) % 2**63
    )
    return Plan(
        step=step, policy=policy, params=params, messages=_messages(req), tags=_tags(req, is_legacy),
        entry=eligible[0], kind=kind, stop=stop, stream=bool(req.stream),
        include_usage=bool(req.stream_options and req.stream_options.include_usage), legacy=is_legacy,
    )  # fmt: skip
