"""Any OpenAI-compatible chat endpoint (a frontier API, vLLM, Ollama, llama.cpp's server).

The contract travels as the endpoint understands it (``response_format`` json_schema or
``tools``), and what comes back is turned into the contract's canonical text so the
ladder validates it exactly like a local generation: many servers accept a schema and
ignore it, so nothing they return is trusted.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import openai

from modelladder.backends.base import BackendError, Generation, GenerationParams

if TYPE_CHECKING:
    from modelladder.contracts.base import Contract
    from modelladder.fleet_types import Rung

__all__ = ["OpenAIBackend"]


class OpenAIBackend:
    def __init__(
        self,
        name: str,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        logprobs: bool = True,
    ):
        self.name = name
        self.model = model
        self._logprobs = logprobs
        self._json_object_fallback = False  # set once the server refuses json_schema
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s, max_retries=0
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
        return cls(rung.name, rung.url or "", rung.model or rung.name, key)

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
        timeout = params.timeout_s
        t0 = time.perf_counter()
        try:
            resp = self._client.chat.completions.create(**request, timeout=timeout)
        except (openai.BadRequestError, openai.InternalServerError, openai.UnprocessableEntityError) as exc:
            text = str(exc).lower()
            if self._logprobs and "logprob" in text:
                self._logprobs = False  # this server refuses logprobs: stop asking
                return self.generate(messages, contract, params)
            if not self._json_object_fallback and "json_schema" in text and "response_format" in text:
                self._json_object_fallback = True
                return self.generate(messages, contract, params)
            raise BackendError("bad_response", f"{self.name}: endpoint rejected the request: {exc}") from exc
        except openai.APITimeoutError as exc:
            raise BackendError("timeout", f"{self.name}: no answer within {timeout}s") from exc
        except openai.APIConnectionError as exc:
            raise BackendError(
                "unreachable",
                f"{self.name}: cannot reach {self._client.base_url}: {exc}; check `url` in the fleet file",
            ) from exc
        except openai.AuthenticationError as exc:
            raise BackendError(
                "unauthorized", f"{self.name}: the endpoint refused the API key: {exc}"
            ) from exc
        except openai.APIStatusError as exc:
            raise BackendError("bad_response", f"{self.name}: HTTP {exc.status_code}: {exc}") from exc
        latency = time.perf_counter() - t0
        if not resp.choices:
            raise BackendError("bad_response", f"{self.name}: the endpoint returned no choices")
        choice = resp.choices[0]
        message = choice.message.model_dump(exclude_none=True)
        text = (
            contract.from_openai_message(message) if contract is not None else (message.get("content") or "")
        )
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
