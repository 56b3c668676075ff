"""Any OpenAI-compatible chat endpoint (a frontier API, vLLM, Ollama, llama.cpp's server).

The contract travels as the endpoint understands it (``response_format`` json_schema or
``tools``), and what comes back is turned into the contract's canonical text so the
ladder validates it exactly like a local generation: many servers accept a schema and
ignore it, so nothing they return is trusted.

Whatever the endpoint does wrong becomes one :class:`BackendError` with a code the ladder
escalates on (and cools the rung down on, :mod:`modelladder.ladder.cooldown`): a 429 is
``rate_limited`` with its ``Retry-After``, a 5xx ``server_error``, a broken connection
``unreachable``, a body that is truncated, not JSON, not a chat completion or over the byte cap
``bad_response``, no complete answer within the timeout ``timeout`` (a deadline for the whole
response: :mod:`modelladder.backends.http_guard`). The rung's API key is scrubbed from every
message and answer, so an endpoint that echoes it cannot put it in a trace or a log.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

import httpx
import openai
from openai.types.chat import ChatCompletion

from modelladder.backends.base import BackendError, Generation, GenerationParams
from modelladder.backends.http_guard import (
    DEFAULT_MAX_RESPONSE_BYTES,
    ResponseTooLarge,
    guarded_client,
    retry_after_s,
)

if TYPE_CHECKING:
    from modelladder.contracts.base import Contract
    from modelladder.fleet_types import Rung

__all__ = ["DEFAULT_TIMEOUT_S", "OpenAIBackend"]

DEFAULT_TIMEOUT_S = 60.0
_REDACTED = "[redacted]"


class OpenAIBackend:
    def __init__(
        self,
        name: str,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        logprobs: bool = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ):
        self.name = name
        self.model = model
        self.timeout_s = timeout_s
        self._logprobs = logprobs
        self._json_object_fallback = False  # set once the server refuses json_schema
        self._key = api_key or ""
        http = guarded_client(timeout_s, max_response_bytes)
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            timeout=timeout_s,
            max_retries=0,
            http_client=http,  # type: ignore[arg-type]  # openai 2.x is typed on httpx2; it accepts httpx
        )

    @classmethod
    def from_rung(cls, rung: Rung) -> OpenAIBackend:
        key = None
        if rung.api_key_env:
            key = os.environ.get(rung.api_key_env)
            if not key:
                raise BackendError(
                    "model_missing",
                    f"rung {rung.name!r}: environment variable {rung.api_key_env} is not set; export the API key",
                )
        return cls(
            rung.name,
            rung.url or "",
            rung.model or rung.name,
            key,
            timeout_s=rung.timeout_s or DEFAULT_TIMEOUT_S,
        )

    def _scrub(self, text: str) -> str:
        """``text`` without this rung's API key (an endpoint may echo it in an error or an answer)."""
        return text.replace(self._key, _REDACTED) if len(self._key) >= 4 else text

    def _fail(self, code: str, message: str, retry_after: float | None = None) -> BackendError:
        return BackendError(code, self._scrub(message), retry_after_s=retry_after)

    def generate(
        self, messages: list[dict[str, Any]], contract: Contract | None, params: GenerationParams
    ) -> Generation:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
        }
        if params.seed:
            request["seed"] = params.seed
        if contract is not None:
            request.update(contract.openai_request())
            rf = request.get("response_format")
            if self._json_object_fallback and isinstance(rf, dict) and rf.get("type") == "json_schema":
                # llama.cpp-style servers: the schema rides on json_object
                request["response_format"] = {"type": "json_object", "schema": rf["json_schema"]["schema"]}
        if self._logprobs:
            request["logprobs"] = True
        timeout = params.timeout_s or self.timeout_s
        t0 = time.perf_counter()
        try:
            # The SDK's own request path (``client.post``, as its README shows for custom requests)
            # rather than ``chat.completions.create``: that one first runs the body through the
            # SDK's TypedDict transform, an identity for this plain-JSON body (chat parameters have
            # no aliases or formats) that cost ~0.2 ms of CPU per call, ~6 % of the gateway's.
            # Same wire request, auth (bearer only, as create sends it), response model, errors.
            resp = self._client.post(
                "/chat/completions",
                cast_to=ChatCompletion,
                body=request,
                options={"timeout": timeout, "security": {"bearer_auth": True}},
            )
        except (openai.BadRequestError, openai.UnprocessableEntityError, openai.InternalServerError) as exc:
            text = str(exc).lower()
            if self._logprobs and "logprob" in text:
                self._logprobs = False  # this server refuses logprobs: stop asking
                return self.generate(messages, contract, params)
            if not self._json_object_fallback and "json_schema" in text and "response_format" in text:
                self._json_object_fallback = True
                return self.generate(messages, contract, params)
            if isinstance(exc, openai.InternalServerError):  # any 5xx: the endpoint's trouble, not ours
                wait = retry_after_s(exc.response.headers)
                raise self._fail("server_error", f"{self.name}: HTTP {exc.status_code}: {exc}", wait) from exc
            raise self._fail("bad_response", f"{self.name}: endpoint rejected the request: {exc}") from exc
        except openai.APITimeoutError as exc:
            raise self._fail("timeout", f"{self.name}: no complete answer within {timeout}s") from exc
        except openai.APIConnectionError as exc:
            cause = exc.__cause__
            if isinstance(cause, ResponseTooLarge):
                raise self._fail("bad_response", f"{self.name}: {cause}") from exc
            if isinstance(cause, httpx.RemoteProtocolError | httpx.ReadError):
                raise self._fail(
                    "unreachable",
                    f"{self.name}: the connection broke before the answer was complete: {cause}",
                ) from exc
            raise self._fail(
                "unreachable",
                f"{self.name}: cannot reach {self._client.base_url}: {exc}; check `url` in the fleet file",
            ) from exc
        except openai.AuthenticationError as exc:
            raise self._fail("unauthorized", f"{self.name}: the endpoint refused the API key: {exc}") from exc
        except openai.RateLimitError as exc:
            wait = retry_after_s(exc.response.headers)
            said = f"; Retry-After {wait:g}s" if wait is not None else "; no Retry-After"
            raise self._fail(
                "rate_limited", f"{self.name}: HTTP 429 rate limited{said}: {exc}", wait
            ) from exc
        except openai.APIStatusError as exc:
            raise self._fail("bad_response", f"{self.name}: HTTP {exc.status_code}: {exc}") from exc
        except ValueError as exc:  # a 200 whose body is not JSON (truncated, garbage)
            raise self._fail("bad_response", f"{self.name}: the answer is not valid JSON: {exc}") from exc
        try:
            return self._generation(resp, contract, time.perf_counter() - t0)
        except BackendError:
            raise
        except Exception as exc:  # valid JSON, but not a chat completion: never guess at it
            raise self._fail(
                "bad_response",
                f"{self.name}: the answer is not a chat completion: {type(exc).__name__}: {exc}",
            ) from exc

    def _generation(self, resp: Any, contract: Contract | None, latency: float) -> Generation:
        """The generation in ``resp``; raises on anything that is not a chat completion."""
        if isinstance(resp, str) or not resp.choices:
            raise self._fail("bad_response", f"{self.name}: the endpoint returned no choices")
        choice = resp.choices[0]
        message = choice.message.model_dump(exclude_none=True)
        if self._key:
            message = json.loads(self._scrub(json.dumps(message)))
        text = (
            contract.from_openai_message(message) if contract is not None else (message.get("content") or "")
        )
        if not isinstance(text, str):
            raise self._fail("bad_response", f"{self.name}: the message content is not text")
        logprobs: list[float] = []
        if choice.logprobs is not None and choice.logprobs.content:
            logprobs = [t.logprob for t in choice.logprobs.content]
        usage = resp.usage
        return Generation(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            latency_s=latency,
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            token_logprobs=logprobs,
            free=[True] * len(logprobs),
            raw={"id": resp.id, "message": message},
        )
