"""A deterministic backend for fast unit tests only: it answers with the model's name and the
last user message, word by word, and finds an answer the more likely the fewer of its words
are neither in that reply nor in a system message. Never a user-facing default."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from ftapp.names import BASE
from ftapp.serving.backend import (
    AnswerScore,
    BackendEndpoint,
    BackendState,
    BackendStatus,
    ChatRequest,
    ServedModel,
)


class EchoBackend:
    name = "echo"
    on_ready: Callable[[], object] | None = None  # always ready: never called

    def start(self) -> None:
        pass

    def status(self) -> BackendStatus:
        return BackendStatus(self.name, BackendState.READY, "echo (test backend)")

    def stream_chat(self, request: ChatRequest) -> Iterator[str]:
        words = _reply(request.model, request.messages).split(" ")
        for i, word in enumerate(words[: request.sampling.max_new_tokens]):
            yield word if i == 0 else " " + word

    def answer_likelihood(
        self, model: ServedModel, prompt: list[dict[str, str]], answer: list[dict[str, str]]
    ) -> AnswerScore:
        """Minus the number of the answer's words found neither in the reply this backend
        would give nor in a system message (so a contestant's system prompt counts); a token
        a word."""
        known = set(_reply(model, prompt).split())
        known |= {w for m in prompt if m["role"] == "system" for w in m["content"].split()}
        words = " ".join(m["content"] for m in answer).split()
        return AnswerScore(-float(sum(word not in known for word in words)), max(len(words), 1))

    def register_alias(self, alias: str, adapter_path: Path | None) -> None:
        pass  # names are resolved at every request

    def endpoint(self) -> BackendEndpoint:
        return BackendEndpoint(url=None, base_name=BASE, own_server=False)

    def close(self) -> None:
        pass


def _reply(model: ServedModel, messages: list[dict[str, str]]) -> str:
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return f"[{model.name}] {last_user}"
