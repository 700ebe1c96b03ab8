"""Evaluation fixtures: Services on the echo backend with prompt-engineered contestants (the
arena's home), and a chat function whose answers a test can predict: a contestant with a
system prompt answers "Say: X" with exactly X; the plain base model says it doesn't know."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ftapp.arena.prompts import Prompt
from ftapp.evaluation.runs import eval_work_list
from ftapp.generation.queue import generate_pending
from ftapp.services import Services
from ftapp.serving.backend import Sampling
from ftapp.settings import Settings
from tests.arena.conftest import arena_home


def knowing_chat(model: str, messages: list[dict[str, str]], sampling: Sampling) -> Iterator[str]:
    question = messages[-1]["content"]
    if messages[0]["role"] == "system":
        yield question.split(":", 1)[1].strip()
    else:
        yield "I do not know."


def say_prompts(n: int, first: str = "") -> list[Prompt]:
    """`n` prompts "Say: wordI" whose reference is "wordI" (the first one's text may be set)."""
    prompts = [Prompt([{"role": "user", "content": f"Say: word{i}"}], f"word{i}") for i in range(n)]
    if first:
        prompts[0] = Prompt([{"role": "user", "content": f"Say: {first}"}], first)
    return prompts


def generate_all(
    services: Services,
    chat=knowing_chat,
    workers: int = 2,
    settings: Settings | None = None,
    answer_likelihood=None,
) -> int:
    """What the web app's background thread does for runs: generate, then score (under
    `settings`, by default the services' own; preference pairs with `answer_likelihood`, as the
    app does with Services.answer_likelihood)."""
    work = [eval_work_list(services.count_tokens.count_text, settings or services.settings,
                           answer_likelihood)]  # fmt: skip
    return generate_pending(services.db, chat, work, workers=workers)


@pytest.fixture
def eval_services(home: Path) -> Services:
    return arena_home(home)
