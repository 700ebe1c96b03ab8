"""Labeling and review: accept, reject, edit the conversation, tags and notes; for preference
data, edit a pair's rejected answer, swap chosen and rejected, set an unpaired row's label.

Every change records who made it and when (`example_events`); the text as imported stays in
`original_messages_json` (set at the first edit), and the first change of a pair's rejected
answer or of a label records it as imported (`rejected_before`, `label_before`), so
`revert_example` can always bring the whole example back. A pair's token count is its longer
side's (prompt + chosen or prompt + rejected), as at import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import sqlite_utils

from ftapp.data.formats import RowError, check_messages, content_hash, split_prompt
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
    *,
    rejected: list[dict[str, str]] | None = None,
) -> Example:
    """Replace an example's conversation, and a pair's rejected answer when `rejected` is given
    (None keeps it), after checking they are what a model can learn from."""
    clean = _clean(messages, "conversation")
    new_rejected = None if rejected is None else _clean(rejected, "rejected answer")
    try:
        check_messages(clean)
    except RowError as exc:
        raise ValidationError(f"example #{example_id}: {exc}") from None
    with write_transaction(db):
        example = store.get_example(db, example_id)
        if new_rejected is not None and example.rejected is None:
            raise ValidationError(f"example #{example_id} has no rejected answer to edit: "
                                  f"{_kind_of(example)}")  # fmt: skip
        if new_rejected is None:
            new_rejected = example.rejected
        if clean == example.messages and new_rejected == example.rejected:
            return example
        detail = {"before": example.messages, "after": clean}
        if new_rejected != example.rejected:
            detail |= {"rejected_before": example.rejected, "rejected_after": new_rejected}
        sides = _sides(example_id, clean, new_rejected)
        _write_text(db, example, clean, new_rejected, max(count_tokens(sides)), action="edit",
                    detail=detail, user=user)  # fmt: skip
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
    rejected: str | None = None,
) -> Example:
    """Edit the system prompt, the last user turn and the last assistant turn, keeping the rest;
    `rejected` is the last assistant turn of a pair's rejected answer (None or empty text keeps
    an example without one as it is)."""
    example = store.get_example(db, example_id)
    messages = [dict(m) for m in example.messages]
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
    other = None
    if example.rejected is not None and rejected is not None:
        other = [dict(m) for m in example.rejected]
        last = max(i for i, m in enumerate(other) if m["role"] == "assistant")
        other[last]["content"] = rejected
    elif rejected:  # text for a rejected answer the example doesn't have: edit_example refuses
        other = [{"role": "assistant", "content": rejected}]
    return edit_example(db, example_id, messages, user, count_tokens, rejected=other)


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
    rejected: str | None = None,
) -> Example:
    """The review form's Save: text (a pair's rejected answer too), tags and note together, or
    nothing if any is invalid."""
    with write_transaction(db):
        edit_turns(db, example_id, system=system, prompt=prompt, answer=answer, user=user,
                   count_tokens=count_tokens, rejected=rejected)  # fmt: skip
        set_tags(db, example_id, tags, user)
        return set_note(db, example_id, note, user)


def swap_answers(db: sqlite_utils.Database, example_id: int, user: str) -> Example:
    """Make a pair's rejected answer the chosen one and the chosen one rejected (the reviewer
    disagrees with the source's preference). Swapping twice gives the pair back as it was."""
    with write_transaction(db):
        example = store.get_example(db, example_id)
        if example.rejected is None:
            raise ValidationError(f"example #{example_id} has no rejected answer to swap with: "
                                  f"{_kind_of(example)}")  # fmt: skip
        prompt, chosen = split_prompt(example.messages)
        messages = prompt + example.rejected
        detail = {"before": example.messages, "after": messages,
                  "rejected_before": example.rejected, "rejected_after": chosen}  # fmt: skip
        # The two sides the trainer reads are the same two sequences, so the token count (the
        # longer side's) stays as it is.
        _write_text(db, example, messages, chosen, None, action="swap", detail=detail,
                    user=user)  # fmt: skip
    return store.get_example(db, example_id)


def set_label(db: sqlite_utils.Database, example_id: int, is_good: bool, user: str) -> Example:
    """Label an unpaired (KTO) row's answer good or bad."""
    if not isinstance(is_good, bool):
        raise ValidationError(f"the label must be true (good) or false (bad), got {is_good!r}")
    with write_transaction(db):
        example = store.get_example(db, example_id)
        if example.label is None:
            raise ValidationError(f"example #{example_id} has no good/bad label: "
                                  f"{_kind_of(example)}")  # fmt: skip
        if example.label != is_good:
            store.update_example(
                db,
                example_id,
                {"label": int(is_good),
                 "content_hash": content_hash(example.messages, example.tools, None, is_good)},
                action="label",
                detail={"label_before": example.label, "label_after": is_good},
                user=user,
            )  # fmt: skip
    return store.get_example(db, example_id)


def revert_example(
    db: sqlite_utils.Database, example_id: int, user: str, count_tokens: TokenCounter
) -> Example:
    """Bring back the example exactly as it was imported: its conversation, a pair's rejected
    answer and an unpaired row's label (each as the first event that changed it recorded)."""
    with write_transaction(db):
        example = store.get_example(db, example_id)
        first_label = store.first_event_detail(db, example_id, "label_before")
        if first_label is not None:
            set_label(db, example_id, first_label["label_before"], user)
        first_rejected = store.first_event_detail(db, example_id, "rejected_before")
        rejected = first_rejected["rejected_before"] if first_rejected else None  # None: as is
        return edit_example(db, example_id, example.original_messages, user, count_tokens,
                            rejected=rejected)  # fmt: skip


def _clean(messages: Any, what: str) -> list[dict[str, str]]:
    """The messages with exactly their role and content, or a ValidationError saying which."""
    if not isinstance(messages, list):
        raise ValidationError(f"the {what} must be a list of messages")
    where = "" if what == "conversation" else f"{what}, "
    clean = []
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise ValidationError(f"{where}message {number}: use exactly the fields role and "
                                  "content")  # fmt: skip
        clean.append({"role": message.get("role"), "content": message.get("content")})
    return clean


def _sides(
    example_id: int, messages: list[dict[str, str]], rejected: list[dict[str, str]] | None
) -> list[list[dict[str, str]]]:
    """What the trainer reads of an example: its conversation, and a pair's prompt with the
    rejected answer too, checked as an imported pair is (preference_formats)."""
    if rejected is None:
        return [messages]
    prompt, chosen = split_prompt(messages)
    if any(m["role"] in ("user", "system") for m in rejected):
        raise ValidationError(f"example #{example_id}, rejected answer: a user or system turn; "
                              "an answer is the assistant's turns (and its tools')")  # fmt: skip
    other = prompt + rejected
    try:
        check_messages(other)
    except RowError as exc:
        raise ValidationError(f"example #{example_id}, rejected side: {exc}") from None
    if _texts(chosen) == _texts(rejected):
        raise ValidationError(f"example #{example_id}: the chosen and rejected answers are the "
                              "same: nothing to prefer")  # fmt: skip
    return [messages, other]


def _texts(answer: list[dict[str, str]]) -> list[tuple[str, str]]:
    """An answer as compared when importing a pair: surrounding whitespace ignored."""
    return [(m["role"], m["content"].strip()) for m in answer]


def _write_text(
    db: sqlite_utils.Database,
    example: Example,
    messages: list[dict[str, str]],
    rejected: list[dict[str, str]] | None,
    n_tokens: int | None,
    *,
    action: str,
    detail: dict[str, Any],
    user: str,
) -> None:
    """Store an example's new text (its token count, unless None) and record the event."""
    changes: dict[str, Any] = {
        # The first edit keeps the imported text, so it can always be restored.
        "original_messages_json": json.dumps(example.original_messages, ensure_ascii=False),
        "messages_json": json.dumps(messages, ensure_ascii=False),
        "content_hash": content_hash(messages, example.tools, rejected, example.label),
    }
    if rejected is not None:
        changes["rejected_json"] = json.dumps(rejected, ensure_ascii=False)
    if n_tokens is not None:
        changes["n_tokens"] = n_tokens
    store.update_example(db, example.id, changes, action=action, detail=detail, user=user)


def _kind_of(example: Example) -> str:
    """What an example is, said where an action doesn't fit it (and what does)."""
    if example.rejected is not None:
        return "it is a pair (a chosen and a rejected answer); swap its answers instead"
    if example.label is not None:
        good = "good" if example.label else "bad"
        return f"it is an unpaired (KTO) row, one answer labelled {good}; set its label instead"
    return "it is a conversation to imitate (SFT), with one answer and no label"


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
