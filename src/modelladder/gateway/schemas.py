"""Request and response bodies of the OpenAI-compatible API, as Pydantic models.

Why declare every field: FastAPI turns these models into the app's OpenAPI document, which
is what clients read and what the schemathesis fuzz test generates requests from; and a
request field of the wrong type is rejected here, with a 400 that names the field, before
any model runs. Unknown top-level fields are refused as OpenAI refuses them (a typo must
not silently change behaviour); fields we accept but cannot honour are listed in
``IGNORED_FIELDS`` and documented. The legacy ``functions``/``function_call`` pair and
``role: "function"`` messages are declared here and translated by
:mod:`modelladder.gateway.legacy`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AssistantMessage", "ChatCompletion", "ChatCompletionRequest", "ChatMessage", "Choice",
    "ContentPart", "ErrorBody", "ErrorDetail", "FeedbackAck", "FeedbackRequest", "FunctionDef",
    "IGNORED_FIELDS", "JsonSchemaSpec", "ModelCard", "ModelList", "NAME_PATTERN", "NamedFunction",
    "NamedToolChoice", "ResponseFormat", "ResponseFormatJsonObject", "ResponseFormatJsonSchema",
    "ResponseFormatText", "StreamOptions", "ToolCallFunction", "ToolCallIn", "ToolCallOut", "ToolDef",
    "Usage",
]  # fmt: skip

NAME_PATTERN = r"^[a-zA-Z0-9_.-]{1,64}$"

# Accepted for compatibility, not used (each request records the ones it set, in the trace's
# ``ignored`` tag and the ``x-modelladder-ignored`` header): sampling knobs the ladder does not
# expose (decoding is greedy by default so that a failed small model fails the same way again),
# and provider features (caching, storage, tiers, moderation, web search, audio, predicted
# output). The legacy ``functions``/``function_call`` pair is honoured (see gateway/legacy.py).
IGNORED_FIELDS = (
    "frequency_penalty", "presence_penalty", "top_p", "logit_bias", "logprobs", "top_logprobs",
    "store", "service_tier", "reasoning_effort", "prompt_cache_key", "safety_identifier", "verbosity",
    "audio", "modalities", "moderation", "prediction", "prompt_cache_options",
    "prompt_cache_retention", "web_search_options",
)  # fmt: skip


class _Open(BaseModel):
    """Nested objects tolerate extra keys: SDKs add new optional keys there often."""

    model_config = ConfigDict(extra="allow")


class ContentPart(_Open):
    type: str
    text: str | None = None


class ToolCallFunction(_Open):
    name: str
    arguments: str


class ToolCallIn(_Open):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(_Open):
    """``function`` (a result, with ``name``) and an assistant ``function_call`` are the legacy
    forms of ``tool`` and ``tool_calls``; the gateway translates them before the ladder runs."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    function_call: ToolCallFunction | None = None


class FunctionDef(_Open):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(_Open):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Open):
    name: str


class NamedToolChoice(_Open):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaSpec(_Open):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")] = "output"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormatText(_Open):
    type: Literal["text"]


class ResponseFormatJsonObject(_Open):
    type: Literal["json_object"]


class ResponseFormatJsonSchema(_Open):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[
    ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema, Field(discriminator="type")
]


class StreamOptions(_Open):
    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``. ``model``: ``ladder``, ``ladder/<step>`` or a rung name."""

    model_config = ConfigDict(extra="forbid")

    model: str = "ladder"
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    tools: list[ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # legacy function calling, translated to tools/tool_choice (see gateway/legacy.py)
    functions: list[FunctionDef] | None = None
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    response_format: ResponseFormat | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: Annotated[int, Field(ge=1)] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    # accepted, ignored (see IGNORED_FIELDS)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    top_p: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    verbosity: str | None = None
    audio: dict[str, Any] | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    moderation: dict[str, Any] | str | bool | None = None
    prediction: dict[str, Any] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    prompt_cache_retention: str | None = None
    web_search_options: dict[str, Any] | None = None


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: the outcome of a step, as the agent saw it. ``run_id`` is the
    ``x-modelladder-run-id`` header or the completion's ``id`` (with or without ``chatcmpl-``)."""

    model_config = ConfigDict(extra="forbid")

    run_id: Annotated[str, Field(min_length=1, max_length=200)]
    success: bool
    note: Annotated[str, Field(max_length=10_000)] | None = None


# -- responses (documentation only: handlers build plain dicts, which is faster) ---------------


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"]
    function: ToolCallFunction


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCallOut] | None = None
    function_call: ToolCallFunction | None = None  # instead of tool_calls, for a legacy request


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls", "function_call"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class FeedbackAck(BaseModel):
    object: Literal["feedback"]
    run_id: str
    success: bool
