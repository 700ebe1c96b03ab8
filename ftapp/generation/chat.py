"""What the answer queue, battles and production chat are given to talk to a model: a chat
function, a way to open the database, and the rule for a contestant's system prompt."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import sqlite_utils

from ftapp.records import Contestant
from ftapp.serving.backend import Sampling

# The reply of a model ("base", a variant, "production") to a conversation, in pieces.
ChatFn = Callable[[str, list[dict[str, str]], Sampling], Iterator[str]]
# A connection for one unit of work (Services.db): every thread opens its own.
OpenDb = Callable[[], AbstractContextManager[sqlite_utils.Database]]


def with_system_prompt(
    contestant: Contestant, conversation: list[dict[str, str]]
) -> list[dict[str, str]]:
    """The messages a contestant's model is sent: its system prompt comes first, before a
    system message the prompt itself may carry."""
    if not contestant.system_prompt:
        return conversation
    if conversation and conversation[0]["role"] == "system":
        merged = f"{contestant.system_prompt}\n\n{conversation[0]['content']}"
        return [{"role": "system", "content": merged}, *conversation[1:]]
    return [{"role": "system", "content": contestant.system_prompt}, *conversation]
