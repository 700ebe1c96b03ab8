"""The one interface every generator implements (vLLM, in-process transformers, echo), and the
plain records that cross it.

A backend streams a chat answer for one model: the base model ("base") or a LoRA adapter
named after its model variant, and scores a given answer (its log-probability, for an
evaluation's preference accuracy). The Playground, the Arena and evaluations call only this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from ftapp.errors import ValidationError


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


def sampling_from_fields(
    *, temperature: Any, top_p: Any, max_new_tokens: Any, seed: Any = None
) -> Sampling:
    """Sampling settings from a form's or a command line's fields, as typed: numbers or text,
    the seed empty for random. The Playground, the Arena, the Evaluate tab and the CLI all
    build their sampling here; a bad field is a ValidationError that names it."""
    return Sampling(
        temperature=_number(temperature, "temperature"),
        top_p=_number(top_p, "top-p"),
        max_new_tokens=whole_number(max_new_tokens, "max new tokens", minimum=1),
        seed=parse_seed(seed),
    )


def parse_seed(value: Any) -> int | None:
    """A seed field: empty (None, "", spaces) means random; otherwise a whole number >= 0."""
    if value is None or not str(value).strip():
        return None
    return whole_number(str(value).strip() if isinstance(value, str) else value, "seed", minimum=0)


def whole_number(value: Any, field: str, *, minimum: int | None = None) -> int:
    """A whole number from a field, or a ValidationError that names the field."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{field} must be a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValidationError(f"{field} must be at least {minimum}, got {number}")
    return number


def _number(value: Any, field: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{field} must be a number, got {value!r}") from None


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


def check_answer(turns: list[dict[str, str]]) -> list[dict[str, str]]:
    """An answer to score (the turns after a prompt's last user turn: a preference pair's
    chosen or rejected answer): known roles, text of a sane size, at least one assistant turn
    with text."""
    if not isinstance(turns, list) or not turns:
        raise ValidationError("the answer to score is empty")
    total = 0
    for i, turn in enumerate(turns, 1):
        if not isinstance(turn, dict) or turn.get("role") not in ROLES:
            raise ValidationError(f"answer turn {i}: role must be one of {', '.join(ROLES)}")
        if not isinstance(turn.get("content"), str):
            raise ValidationError(f"answer turn {i}: content must be text")
        total += len(turn["content"])
    if total > MAX_MESSAGE_CHARS:
        raise ValidationError(f"the answer to score is {total:,} characters; the limit is "
                              f"{MAX_MESSAGE_CHARS:,}")  # fmt: skip
    if not any(t["role"] == "assistant" and t["content"].strip() for t in turns):
        raise ValidationError("the answer to score has no assistant text")
    return [{"role": t["role"], "content": t["content"]} for t in turns]


def answer_start(prompt_ids: list[int], full_ids: list[int]) -> int:
    """Where the answer's tokens begin in the templated conversation: after the tokens it
    shares with the templated prompt (with its generation prompt). For most chat templates
    the prompt is a prefix of the conversation; where it is not (a template that rewrites
    earlier turns once an answer follows), the shared part is the prompt."""
    start = 0
    for a, b in zip(prompt_ids, full_ids, strict=False):
        if a != b:
            break
        start += 1
    if start >= len(full_ids):
        raise ValidationError("the answer to score has no tokens after the prompt")
    return max(start, 1)  # the first token of a sequence has no probability


@dataclass(frozen=True)
class AnswerScore:
    """How likely a model finds a given answer: what preference accuracy compares (chosen
    against rejected) and drift measures (a variant against base, per token)."""

    logprob: float  # the sum of the answer tokens' log-probabilities, in nats
    tokens: int  # how many tokens that is

    @property
    def per_token(self) -> float:
        return self.logprob / self.tokens


@dataclass(frozen=True)
class ChatRequest:
    model: ServedModel
    messages: list[dict[str, str]]  # {"role": "system"|"user"|"assistant", "content": ...}
    sampling: Sampling = field(default_factory=Sampling)


@dataclass(frozen=True)
class BackendEndpoint:
    """Where a client outside the app reaches the engine, for the Deploy tab's snippets."""

    url: str | None  # the server's root URL; None when generation runs inside the app
    base_name: str  # the name clients send for the base model
    own_server: bool  # whether ftapp starts the server itself (it listens on loopback only)


class Backend(Protocol):
    name: str
    # Called each time the engine becomes ready after it was not (start-up, a restart of a
    # server that forgot its aliases); errors are logged, not raised. The app registers
    # "production" there. Backends that never forget (in-process) never call it.
    on_ready: Callable[[], object] | None

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

    def answer_likelihood(
        self, model: ServedModel, prompt: list[dict[str, str]], answer: list[dict[str, str]]
    ) -> AnswerScore:
        """The log-probability the model gives `answer` (the turns after the prompt) following
        `prompt` (a conversation ending with the user turn): the sum over the answer's tokens,
        the end-of-turn token included, with the model's chat template around both, and how
        many tokens that is. The answer is scored, not generated. Raises ServingError when the
        engine can't answer."""
        ...

    def register_alias(self, alias: str, adapter_path: Path | None) -> None:
        """Make `alias` name the adapter at `adapter_path` (None: no adapter under that name)
        for clients that call the engine directly. Backends that resolve names at every
        request (in-process) do nothing. Raises ServingError when the engine can't be told."""
        ...

    def endpoint(self) -> BackendEndpoint:
        """How a client outside the app calls the engine; never raises (a server still
        starting gives the name ftapp's own server uses for the base model)."""
        ...

    def close(self) -> None:
        """Release what the backend holds (a server process, a model in memory)."""
        ...
