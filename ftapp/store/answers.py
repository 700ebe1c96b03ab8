"""The answer queue's tables: `session_answers` (the Arena's evaluation sessions),
`eval_answers` (automatic evaluation runs) and `probe_answers` (the base model's answers to the
drift probes) have the same shape, described by an `AnswerTable`, and every claim, result,
count and retry of any goes through this one module, so the kinds of answer can't drift apart.

An answer row is `pending`, `running` (claimed, with `claimed_at` and its `attempts` counted),
`done` (with `answer` and `latency_ms`) or `failed` (with `error`). Claims happen in one
BEGIN IMMEDIATE transaction, so two generators never take the same answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from ftapp.store.db import write_transaction
from ftapp.timeutil import utc_now


@dataclass(frozen=True)
class AnswerTable:
    """One table of answers: each answers one item (a prompt, an example) of one group (a
    session, a run), and the group's row carries the contestants and the sampling."""

    answers: str  # "session_answers"
    group_column: str  # "session_id": the group an answer belongs to
    groups: str  # "eval_sessions": has status, contestants_json and sampling_json
    item_column: str  # "prompt_id": the item it answers
    items: str  # "session_prompts": has messages_json


SESSION_ANSWERS_TABLE = AnswerTable(
    "session_answers", "session_id", "eval_sessions", "prompt_id", "session_prompts"
)
EVAL_ANSWERS_TABLE = AnswerTable(
    "eval_answers", "run_id", "eval_runs", "example_id", "eval_examples"
)
PROBE_ANSWERS_TABLE = AnswerTable(
    "probe_answers", "set_id", "probe_sets", "prompt_id", "probe_prompts"
)


def insert_items(
    db: sqlite_utils.Database,
    table: AnswerTable,
    group_id: int,
    items: list[tuple[list[dict[str, str]], str | None]],
    contestants: list[str],
    first_position: int,
) -> None:
    """A new group's items (messages, reference), numbered from `first_position`, and one
    pending answer per item and contestant; in the caller's transaction, with the group."""
    for position, (messages, reference) in enumerate(items, first_position):
        item_id = db[table.items].insert({
            table.group_column: group_id, "position": position,
            "messages_json": json.dumps(messages, ensure_ascii=False), "reference": reference,
        }).last_pk  # fmt: skip
        db[table.answers].insert_all(
            {table.group_column: group_id, table.item_column: item_id, "contestant": name}
            for name in contestants
        )


def claim_answers(
    db: sqlite_utils.Database, table: AnswerTable, limit: int, stale_before: str
) -> list[dict[str, Any]]:
    """Take up to `limit` answers of generating groups: pending ones, and running ones claimed
    before `stale_before` (their generator died). Marked running, stamped and their attempt
    counted in the same transaction. Each row comes with its item's `messages_json` and its
    group's `contestants_json` and `sampling_json`."""
    t = table
    select = (
        f"SELECT a.*, i.messages_json, g.contestants_json, g.sampling_json FROM {t.answers} a "
        f"JOIN {t.items} i ON i.id = a.{t.item_column} "
        f"JOIN {t.groups} g ON g.id = a.{t.group_column} "
        "WHERE g.status = 'generating' AND (a.status = 'pending' OR "
        "(a.status = 'running' AND a.claimed_at < ?)) ORDER BY a.id LIMIT ?"
    )  # fmt: skip
    now = utc_now()
    with write_transaction(db):
        rows = list(db.query(select, [stale_before, limit]))
        for row in rows:
            db.execute(
                f"UPDATE {t.answers} SET status = 'running', claimed_at = ?, "
                "attempts = attempts + 1 WHERE id = ?",
                [now, row["id"]],
            )
    return rows


def finish_answer(
    db: sqlite_utils.Database, table: AnswerTable, answer_id: int, **changes: Any
) -> None:
    """Write one result back: status done with the answer, or pending/failed with the error."""
    db[table.answers].update(answer_id, {**changes, "finished_at": utc_now()})


def answer_counts(db: sqlite_utils.Database, table: AnswerTable, group_id: int) -> dict[str, int]:
    """How many answers of the group are in each status."""
    rows = db.execute(
        f"SELECT status, COUNT(*) FROM {table.answers} WHERE {table.group_column} = ? "
        "GROUP BY status",
        [group_id],
    ).fetchall()
    return {status: count for status, count in rows}


def failure_reasons(db: sqlite_utils.Database, table: AnswerTable, group_id: int) -> list[str]:
    """The distinct errors of the group's answers that failed for good, sorted."""
    rows = db.execute(
        f"SELECT DISTINCT error FROM {table.answers} WHERE {table.group_column} = ? "
        "AND status = 'failed' AND error IS NOT NULL AND error != '' ORDER BY error",
        [group_id],
    ).fetchall()
    return [row[0] for row in rows]


def retry_failed_answers(db: sqlite_utils.Database, table: AnswerTable, group_id: int) -> int:
    """Put the group's failed answers back in the queue with a fresh set of attempts (an admin
    asked for it, usually after fixing the cause). Returns how many."""
    return db.execute(
        f"UPDATE {table.answers} SET status = 'pending', error = NULL, attempts = 0 "
        f"WHERE {table.group_column} = ? AND status = 'failed'",
        [group_id],
    ).rowcount


def groups_generating(db: sqlite_utils.Database, table: AnswerTable) -> list[int]:
    """The groups whose answers are still being generated, oldest first."""
    rows = db.execute(f"SELECT id FROM {table.groups} WHERE status = 'generating' ORDER BY id")
    return [row[0] for row in rows]
