"""Labeling and review: accept, reject, edit the conversation, tags and notes.

Every change records who made it and when (`example_events`); the text as imported stays in
`original_messages_json` (set at the first edit), so `revert_example` can always bring it back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from ftapp.data.formats import RowError, check_messages, content_hash, split_prompt
from ftapp.data.stats import dataset_stats
from ftapp.errors import NotFound, ValidationError
from ftapp.records import Example, ExampleStatus, parse_choice
from ftapp.store import datasets as store
from ftapp.store.db import write_transaction
from ftapp.timeutil import utc_now

TAG = re.compile(r"^[^\s,][^,]{0,49}$")
MAX_TAGS = 20

TokenCounter = Callable[[list[list[dict[str, str]]]], list[int]]


def set_status(db: sqlite_utils.Database, example_ids: list[int], status: str, user: str) -> int:
    """Accept, reject or reset (pending) examples. Returns how many changed."""
    new_status = parse_choice(ExampleStatus, status, "status").value
    with write_transaction(db):
        current = store.example_statuses(db, example_ids)
        missing = sorted(set(example_ids) - set(current))
        if missing:
            raise NotFound(f"no example #{missing[0]}")
        changing = [(i, old) for i, old in current.items() if old != new_status]
        store.set_statuses(db, changing, new_status, user, utc_now())
    return len(changing)


def set_status_where(
    db: sqlite_utils.Database, dataset: str, new_status: str, user: str, **filters: str | None
) -> int:
    """Set the status of every example of a dataset that matches the filters (bulk review);
    filters are those of `query_examples` (status, split, tag, search)."""
    target = store.get_dataset(db, dataset)
    return set_status(db, store.matching_example_ids(db, target.id, **filters), new_status, user)


def edit_example(
    db: sqlite_utils.Database,
    example_id: int,
    messages: list[dict[str, str]],
    user: str,
    count_tokens: TokenCounter,
) -> Example:
    """Replace an example's conversation, after checking it is one a model can learn from."""
    if not isinstance(messages, list):
        raise ValidationError("the conversation must be a list of messages")
    clean = []
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise ValidationError(f"message {number}: use exactly the fields role and content")
        clean.append({"role": message.get("role"), "content": message.get("content")})
    try:
        check_messages(clean)
    except RowError as exc:
        raise ValidationError(f"example #{example_id}: {exc}") from None
    with write_transaction(db):
        example = store.get_example(db, example_id)
        if clean == example.messages:
            return example
        sequences = [clean]
        if example.rejected is not None:  # a pair: the edited prompt is the rejected side's too
            sequences.append(split_prompt(clean)[0] + example.rejected)
            try:
                check_messages(sequences[1])
            except RowError as exc:
                raise ValidationError(f"example #{example_id}, rejected side: {exc}") from None
        n_tokens = max(count_tokens(sequences))
        store.update_example(
            db,
            example_id,
            {
                # The first edit keeps the imported text, so it can always be restored.
                "original_messages_json": json.dumps(example.original_messages, ensure_ascii=False),
                "messages_json": json.dumps(clean, ensure_ascii=False),
                "content_hash": content_hash(
                    clean, example.tools, example.rejected, example.label
                ),  # fmt: skip
                "n_tokens": n_tokens,
            },
            action="edit",
            detail={"before": example.messages, "after": clean},
            user=user,
        )
    return store.get_example(db, example_id)


def edit_turns(
    db: sqlite_utils.Database,
    example_id: int,
    *,
    system: str,
    prompt: str,
    answer: str,
    user: str,
    count_tokens: TokenCounter,
) -> Example:
    """Edit the system prompt, the last user turn and the last assistant turn, keeping the rest."""
    messages = [dict(m) for m in store.get_example(db, example_id).messages]
    last_answer = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    last_prompt = max(i for i, m in enumerate(messages[:last_answer]) if m["role"] == "user")
    messages[last_answer]["content"] = answer
    messages[last_prompt]["content"] = prompt
    has_system = messages[0]["role"] == "system"
    if system.strip():
        if has_system:
            messages[0]["content"] = system
        else:
            messages.insert(0, {"role": "system", "content": system})
    elif has_system:
        messages.pop(0)
    return edit_example(db, example_id, messages, user, count_tokens)


def save_example(
    db: sqlite_utils.Database,
    example_id: int,
    *,
    system: str,
    prompt: str,
    answer: str,
    tags: list[str],
    note: str,
    user: str,
    count_tokens: TokenCounter,
) -> Example:
    """The review form's Save: text, tags and note together, or nothing if any is invalid."""
    with write_transaction(db):
        edit_turns(db, example_id, system=system, prompt=prompt, answer=answer, user=user,
                   count_tokens=count_tokens)  # fmt: skip
        set_tags(db, example_id, tags, user)
        return set_note(db, example_id, note, user)


def revert_example(
    db: sqlite_utils.Database, example_id: int, user: str, count_tokens: TokenCounter
) -> Example:
    """Bring back the conversation exactly as it was imported."""
    example = store.get_example(db, example_id)
    return edit_example(db, example_id, example.original_messages, user, count_tokens)


def set_tags(db: sqlite_utils.Database, example_id: int, tags: list[str], user: str) -> Example:
    clean = sorted({tag.strip() for tag in tags if tag.strip()})
    for tag in clean:
        if not TAG.match(tag):
            raise ValidationError(f"tag {tag!r}: 1-50 characters, no commas")
    if len(clean) > MAX_TAGS:
        raise ValidationError(f"at most {MAX_TAGS} tags per example, got {len(clean)}")
    with write_transaction(db):
        example = store.get_example(db, example_id)
        if clean != example.tags:
            store.update_example(
                db,
                example_id,
                {"tags_json": json.dumps(clean, ensure_ascii=False)},
                action="tags",
                detail={"before": example.tags, "after": clean},
                user=user,
            )
    return store.get_example(db, example_id)


def set_note(db: sqlite_utils.Database, example_id: int, note: str, user: str) -> Example:
    if len(note) > 5000:
        raise ValidationError(f"a note holds at most 5000 characters, got {len(note)}")
    with write_transaction(db):
        example = store.get_example(db, example_id)
        if note != example.note:
            store.update_example(
                db,
                example_id,
                {"note": note},
                action="note",
                detail={"before": example.note, "after": note},
                user=user,
            )
    return store.get_example(db, example_id)


def parse_tags(text: str) -> list[str]:
    """Tags typed as comma-separated text."""
    return [tag.strip() for tag in (text or "").split(",") if tag.strip()]


@dataclass(frozen=True)
class ReviewPage:
    """What the review screen shows: one page of the examples matching the filters, and the
    example at position `at` of them (clamped to the matches) with its history."""

    stats: dict[str, Any]  # data/stats.dataset_stats of the whole dataset
    total: int  # examples matching the filters
    at: int
    page_start: int
    examples: list[Example]
    current: Example | None
    events: list[dict[str, Any]]  # the current example's history, oldest first


def review_page(
    db: sqlite_utils.Database,
    dataset: str,
    at: int,
    page_size: int,
    *,
    status: str | None = None,
    split: str | None = None,
    tag: str | None = None,
    search: str | None = None,
) -> ReviewPage:
    target = store.get_dataset(db, dataset)
    filters = {"status": status, "split": split, "tag": tag, "search": search}
    stats = dataset_stats(db, dataset)
    _, total = store.query_examples(db, target.id, limit=0, **filters)
    at = max(0, min(at, total - 1))
    page_start = (at // page_size) * page_size
    page, _ = store.query_examples(db, target.id, offset=page_start, limit=page_size, **filters)
    current = page[at - page_start] if page else None
    events = store.example_events(db, current.id) if current else []
    return ReviewPage(stats, total, at, page_start, page, current, events)
