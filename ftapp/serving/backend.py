"""The one interface every generator implements (vLLM, in-process transformers, echo), and the
plain records that cross it.

A backend streams a chat answer for one model: the base model ("base") or a LoRA adapter
named after its model variant. The Playground, the Arena and evaluations call only this.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from ftapp.errors import ValidationError

BASE = "base"  # the model name of the base model itself, in every backend


class BackendState(StrEnum):
    READY = "ready"
    STARTING = "starting"
    DOWN = "down"  # crashed or not answering; a supervised server is being restarted


@dataclass(frozen=True)
class BackendStatus:
    backend: str  # "vllm", "hf" or "echo"
    state: BackendState
    detail: str  # one line for people: what it serves, why it is down, how far start-up is

    @property
    def is_ready(self) -> bool:
        return self.state == BackendState.READY


@dataclass(frozen=True)
class ServedModel:
    """What a request names: the base model, or an adapter folder trained on it."""

    name: str  # BASE or a model variant's name
    adapter_path: Path | None = None  # None for the base model


MAX_NEW_TOKENS = 2048
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7  # 0: greedy
    top_p: float = 0.95
    max_new_tokens: int = 256
    seed: int | None = None  # the same seed and inputs give the same answer

    def __post_init__(self) -> None:
        checks = [
            ("temperature", 0 <= self.temperature <= 2, "from 0 to 2"),
            ("top_p", 0 < self.top_p <= 1, "above 0 and at most 1"),
            ("max_new_tokens", 1 <= self.max_new_tokens <= MAX_NEW_TOKENS,
             f"from 1 to {MAX_NEW_TOKENS}"),
            ("seed", self.seed is None or 0 <= self.seed < 2**31, "from 0 to 2147483647"),
        ]  # fmt: skip
        for name, ok, allowed in checks:
            if not ok:
                raise ValidationError(f"{name} must be {allowed}, got {getattr(self, name)!r}")


# Far above any served model's context (SmolLM2: 8,192 tokens), far below what hurts.
MAX_MESSAGE_CHARS = 50_000
MAX_CONVERSATION_CHARS = 200_000


def check_messages(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """A conversation a chat model can answer: known roles, text of a sane size, ending with
    the user. The size limits come before any tokenizer sees the text: a pasted 50 MB message
    would otherwise cost gigabytes in the in-process backend before the engine refused it."""
    if not messages:
        raise ValidationError("the conversation is empty: write a message first")
    total = 0
    for i, message in enumerate(messages, 1):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValidationError(f"message {i}: role must be one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise ValidationError(f"message {i}: content must be text")
        if len(content) > MAX_MESSAGE_CHARS:
            raise ValidationError(f"message {i} is {len(content):,} characters; the limit is "
                                  f"{MAX_MESSAGE_CHARS:,}")  # fmt: skip
        total += len(content)
    if total > MAX_CONVERSATION_CHARS:
        raise ValidationError(f"the conversation is {total:,} characters; the limit is "
                              f"{MAX_CONVERSATION_CHARS:,}: clear it and start again")  # fmt: skip
    if messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
        raise ValidationError("the last message must be a non-empty user message")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


@dataclass(frozen=True)
class ChatRequest:
    model: ServedModel
    messages: list[dict[str, str]]  # {"role": "system"|"user"|"assistant", "content": ...}
    sampling: Sampling = field(default_factory=Sampling)


class Backend(Protocol):
    name: str

    def start(self) -> None:
        """Start what runs beside the app (a supervised vLLM server); returns at once."""
        ...

    def status(self) -> BackendStatus:
        """Whether it can answer now, without waiting."""
        ...

    def stream_chat(self, request: ChatRequest) -> Iterator[str]:
        """The answer in pieces as they are generated. Closing the iterator stops the
        generation. Raises ftapp.errors.ServingError when the engine can't answer."""
        ...

    def close(self) -> None:
        """Release what the backend holds (a server process, a model in memory)."""
        ...
