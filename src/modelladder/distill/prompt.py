"""The run-time prompt format, used verbatim for training.

A specialist only helps if it is trained on exactly the token sequence the ladder will
feed it. So training does not re-implement chat templating: it renders every example with
:meth:`LlamaCppBackend.render` on the same GGUF (its chat template, its tokenizer, its BOS
rule), and appends the teacher's canonical answer tokenised the same way plus the model's
end-of-turn token. Dataset lines store messages *after* :func:`prepare_messages` (the
contract's instructions merged into the system message), and rendering those with no
contract gives the same tokens as rendering the raw input with the contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, cast

from modelladder.backends import open_backend
from modelladder.backends.base import BackendError
from modelladder.contracts.base import Contract
from modelladder.distill.errors import DistillError
from modelladder.fleet import FleetError, Rung

__all__ = ["PromptFormat"]


class LocalBackend(Protocol):
    """What training needs of a ``llamacpp`` backend: its run-time prompt rendering and tokenizer."""

    prompt_format: str
    eos_token: int

    def render(
        self, messages: list[dict[str, Any]], contract: Contract | None
    ) -> tuple[list[int], list[str]]: ...

    def tokenize(self, text: str) -> list[int]: ...


class PromptFormat:
    """Token ids of prompts and answers for one base GGUF, as the ``llamacpp`` backend makes them."""

    def __init__(
        self,
        gguf: Path,
        prompt_format: str = "chat_template",
        n_ctx: int = 8192,
        n_threads: int | None = None,
    ):
        rung = Rung(
            name="distill-prompt",
            backend="llamacpp",
            params=1,
            path=str(gguf),
            prompt_format=prompt_format,
            n_ctx=n_ctx,
            n_threads=n_threads,
        )
        try:
            backend = cast(LocalBackend, open_backend(rung))
        except (BackendError, FleetError) as exc:
            raise DistillError(f"cannot load the base model {gguf}: {exc}") from exc
        self.gguf = Path(gguf)
        self.backend = backend
        self.prompt_format = backend.prompt_format
        self.eos = backend.eos_token

    def prompt_ids(self, prepared: list[dict[str, Any]]) -> list[int]:
        """The prompt the ladder feeds the model for these (already prepared) messages."""
        ids, _ = self.backend.render(prepared, None)
        return list(ids)

    def answer_ids(self, answer: str) -> list[int]:
        """The answer's tokens followed by end-of-turn: what the model must learn to emit."""
        return self.backend.tokenize(answer) + [self.eos]

    def example_ids(self, messages: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
        """``messages`` = prepared prompt messages + the assistant answer last."""
        if not messages or messages[-1].get("role") != "assistant":
            raise DistillError("a training example must end with the assistant's answer")
        return self.prompt_ids(messages[:-1]), self.answer_ids(str(messages[-1].get("content") or ""))
