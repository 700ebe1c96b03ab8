"""A deterministic backend for fast unit tests only: it answers with the model's name and the
last user message, word by word. Never a user-facing default."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from ftapp.names import BASE
from ftapp.serving.backend import BackendEndpoint, BackendState, BackendStatus, ChatRequest


class EchoBackend:
    name = "echo"
    on_ready: Callable[[], object] | None = None  # always ready: never called

    def start(self) -> None:
        pass

    def status(self) -> BackendStatus:
        return BackendStatus(self.name, BackendState.READY, "echo (test backend)")

    def stream_chat(self, request: ChatRequest) -> Iterator[str]:
        last_user = next(
            (m["content"] for m in reversed(request.messages) if m["role"] == "user"), ""
        )
        words = f"[{request.model.name}] {last_user}".split(" ")
        for i, word in enumerate(words[: request.sampling.max_new_tokens]):
            yield word if i == 0 else " " + word

    def register_alias(self, alias: str, adapter_path: Path | None) -> None:
        pass  # names are resolved at every request

    def endpoint(self) -> BackendEndpoint:
        return BackendEndpoint(url=None, base_name=BASE, own_server=False)

    def close(self) -> None:
        pass
