"""Tables of the Arena: `prompt_variants`, `arena_pool`, `eval_sessions`, `session_prompts`,
`session_answers`, `battles`, `battle_assignments` and `votes`.

The answers of `session_answers` are claimed, written and retried through the answer queue's
store module (ftapp/store/answers.py). One write here is delicate: votes (the database refuses
a second vote by the same reviewer on a battle, and a trigger refuses any change to a cast
vote).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlite_utils

from ftapp.errors import Conflict, NotFound
from ftapp.records import (
    Battle,
    BattleStatus,
    Contestant,
    EvalSession,
    SessionStatus,
    Vote,
    VoteChoice,
)
from ftapp.store.answers import SESSION_ANSWERS_TABLE, insert_items
from ftapp.store.db import to_record, write_transaction
from ftapp.timeutil import seconds_since, utc_now

# --- prompt-engineered contestants and the free-battle pool ---------------------------------


def insert_prompt_variant(
    db: sqlite_utils.Database, name: str, model: str, system_prompt: str, user: str
) -> None:
    try:
        db["prompt_variants"].insert(
            {
                "name": name,
                "model": model,
                "system_prompt": system_prompt,
                "created_at": utc_now(),
                "created_by": user,
            }  # fmt: skip
        )
    except sqlite3.IntegrityError:
        raise Conflict(f"a prompt variant named {name!r} already exists") from None


def list_prompt_variants(db: sqlite_utils.Database) -> list[Contestant]:
    rows = db.query("SELECT name, model, system_prompt FROM prompt_variants ORDER BY name")
    return [Contestant(**row) for row in rows]


def delete_prompt_variant(db: sqlite_utils.Database, name: str) -> None:
    if db.execute("DELETE FROM prompt_variants WHERE name = ?", [name]).rowcount == 0:
        raise NotFound(f"no prompt variant named {name!r}")
    db.execute("DELETE FROM arena_pool WHERE contestant = ?", [name])


def pool(db: sqlite_utils.Database) -> list[str]:
    return [row["contestant"] for row in db.query("SELECT contestant FROM arena_pool ORDER BY 1")]


def replace_pool(db: sqlite_utils.Database, names: list[str], user: str) -> None:
    now = utc_now()
    with write_transaction(db):
        db.execute("DELETE FROM arena_pool")
        for name in names:
            db.execute("INSERT INTO arena_pool VALUES (?, ?, ?)", [name, now, user])


# --- evaluation sessions --------------------------------------------------------------------


def insert_session(
    db: sqlite_utils.Database,
    row: dict[str, Any],
    prompts: list[tuple[list[dict[str, str]], str | None]],
) -> int:
    """The session, its prompts, and one pending answer per prompt and contestant, together."""
    with write_transaction(db):
        if db.execute("SELECT 1 FROM eval_sessions WHERE name = ?", [row["name"]]).fetchone():
            raise Conflict(f"a session named {row['name']!r} already exists")
        session_id = db["eval_sessions"].insert({**row, "created_at": utc_now()}).last_pk
        contestants = [c["name"] for c in json.loads(row["contestants_json"])]
        insert_items(db, SESSION_ANSWERS_TABLE, session_id, prompts, contestants, 0)
    return session_id


def get_session(db: sqlite_utils.Database, name_or_id: str | int) -> EvalSession:
    column = "id" if isinstance(name_or_id, int) else "name"
    row = next(db.query(f"SELECT * FROM eval_sessions WHERE {column} = ?", [name_or_id]), None)
    if row is None:
        raise NotFound(f"no evaluation session {name_or_id!r}")
    return _session(row)


def list_sessions(db: sqlite_utils.Database) -> list[EvalSession]:
    return [_session(row) for row in db.query("SELECT * FROM eval_sessions ORDER BY id DESC")]


def set_session_status(db: sqlite_utils.Database, session_id: int, status: SessionStatus) -> None:
    changes: dict[str, Any] = {"status": status.value}
    if status == SessionStatus.OPEN:
        changes["opened_at"] = utc_now()
    db["eval_sessions"].update(session_id, changes)


def set_min_gold_accuracy(db: sqlite_utils.Database, session_id: int, value: float | None) -> None:
    db["eval_sessions"].update(session_id, {"min_gold_accuracy": value})


def session_prompts(db: sqlite_utils.Database, session_id: int) -> list[dict[str, Any]]:
    rows = db.query(
        "SELECT * FROM session_prompts WHERE session_id = ? ORDER BY position", [session_id]
    )
    return [{**row, "messages": json.loads(row["messages_json"])} for row in rows]


def session_answers(db: sqlite_utils.Database, session_id: int) -> list[dict[str, Any]]:
    return list(
        db.query("SELECT * FROM session_answers WHERE session_id = ? ORDER BY id", [session_id])
    )


# --- battles, assignments, votes ------------------------------------------------------------


def insert_battle(db: sqlite_utils.Database, row: dict[str, Any]) -> int:
    return db["battles"].insert({**row, "created_at": utc_now()}).last_pk


def get_battle(db: sqlite_utils.Database, battle_id: int) -> Battle:
    row = next(db.query("SELECT * FROM battles WHERE id = ?", [battle_id]), None)
    if row is None:
        raise NotFound(f"no battle #{battle_id}")
    return _battle(row)


def update_battle(db: sqlite_utils.Database, battle_id: int, **changes: Any) -> None:
    for side in ("a", "b"):
        if f"conversation_{side}" in changes:
            changes[f"conversation_{side}_json"] = json.dumps(changes.pop(f"conversation_{side}"))
    db["battles"].update(battle_id, changes)


def assign(db: sqlite_utils.Database, battle_id: int, reviewer: str) -> None:
    db.execute(
        "INSERT OR IGNORE INTO battle_assignments VALUES (?, ?, ?)",
        [battle_id, reviewer, utc_now()],
    )


def is_assigned(db: sqlite_utils.Database, battle_id: int, reviewer: str) -> bool:
    return bool(
        db.execute(
            "SELECT 1 FROM battle_assignments WHERE battle_id = ? AND reviewer = ?",
            [battle_id, reviewer],
        ).fetchone()
    )


def battle_and_vote_counts(db: sqlite_utils.Database, session_id: int) -> tuple[int, int]:
    return db.execute(
        "SELECT (SELECT COUNT(*) FROM battles WHERE session_id = ?), (SELECT COUNT(*) FROM "
        "votes v JOIN battles b ON b.id = v.battle_id WHERE b.session_id = ?)",
        [session_id, session_id],
    ).fetchone()


def battle_ids(db: sqlite_utils.Database, session_id: int | None = None) -> list[int]:
    """Every battle's id, oldest first; one session's, or all (free battles too)."""
    where, params = (" WHERE session_id = ?", [session_id]) if session_id else ("", [])
    return [row[0] for row in db.execute(f"SELECT id FROM battles{where} ORDER BY id", params)]


# --- the reviewer queue of a session ----------------------------------------------------------

# Battles of a session a reviewer hasn't been given, with how many judges each has: votes,
# plus battles handed out since the hold time and not voted on yet.
# `{where}` picks the battles (a session's, or one); parameters: overlap, hold_since, the
# session or battle id, reviewer.
_TAKEN_SQL = """
    SELECT id, CASE WHEN gold_choice IS NULL THEN taken ELSE MIN(taken, ? - 1) END AS taken
    FROM (SELECT b.id, b.gold_choice,
        (SELECT COUNT(*) FROM votes v WHERE v.battle_id = b.id)
        + (SELECT COUNT(*) FROM battle_assignments a
           LEFT JOIN votes w ON w.battle_id = a.battle_id AND w.reviewer = a.reviewer
           WHERE a.battle_id = b.id AND w.id IS NULL AND a.assigned_at > ?) AS taken
    FROM battles b
    WHERE {where} = ? AND b.status = 'ready' AND NOT EXISTS
        (SELECT 1 FROM battle_assignments x WHERE x.battle_id = b.id AND x.reviewer = ?))
"""
_SESSION_TAKEN_SQL = _TAKEN_SQL.format(where="b.session_id")
# A check battle (gold_choice set) counts as never more than overlap - 1 times taken: every
# reviewer gets it, mixed among the others, its accuracy measured on them all.
# A reviewer's battles in hand: handed to them, not voted on. Parameters: session_id, reviewer.
_IN_HAND_SQL = (
    "FROM battle_assignments a JOIN battles b ON b.id = a.battle_id "
    "LEFT JOIN votes v ON v.battle_id = a.battle_id AND v.reviewer = a.reviewer "
    "WHERE b.session_id = ? AND a.reviewer = ? AND v.id IS NULL"
)


@dataclass(frozen=True)
class ReviewerCounts:
    judged: int  # votes this reviewer cast in the session
    in_hand: int  # battles handed to them, not voted on
    open_to_them: int  # battles they haven't been given, below the overlap
    n_battles: int  # ready battles of the session
    votes_counted: int  # votes towards the overlap (at most `overlap` per battle)


def unfinished_battle(db: sqlite_utils.Database, session_id: int, reviewer: str) -> int | None:
    """The battle handed to this reviewer first and not voted on yet, if any."""
    row = db.execute(
        f"SELECT a.battle_id {_IN_HAND_SQL} ORDER BY a.assigned_at, a.battle_id LIMIT 1",
        [session_id, reviewer],
    ).fetchone()
    return row[0] if row else None


def least_taken_battles(
    db: sqlite_utils.Database,
    session_id: int,
    reviewer: str,
    overlap: int,
    hold_since: str,
    salt: int,
    limit: int = 1,
) -> list[tuple[int, int]]:
    """(battle id, times taken) of the least-judged battles below the overlap this reviewer
    hasn't been given, ties broken in an order of their own (`salt`), so reviewers starting
    together spread out."""
    return db.execute(
        f"SELECT id, taken FROM ({_SESSION_TAKEN_SQL}) WHERE taken < ? "
        "ORDER BY taken, (id * 2654435761 + ?) % 4294967296 LIMIT ?",
        [overlap, hold_since, session_id, reviewer, overlap, salt, limit],
    ).fetchall()


def times_taken(
    db: sqlite_utils.Database, battle_id: int, reviewer: str, overlap: int, hold_since: str
) -> int | None:
    """One battle's row of `_TAKEN_SQL` (a few index lookups): how many judges it has, or
    None if it is not ready or was given to this reviewer already."""
    row = db.execute(
        _TAKEN_SQL.format(where="b.id"),
        [overlap, hold_since, battle_id, reviewer],
    ).fetchone()
    return None if row is None else row[1]


def reviewer_counts(
    db: sqlite_utils.Database, session_id: int, reviewer: str, overlap: int, hold_since: str
) -> ReviewerCounts:
    judged = db.execute(
        "SELECT COUNT(*) FROM votes v JOIN battles b ON b.id = v.battle_id "
        "WHERE b.session_id = ? AND v.reviewer = ?",
        [session_id, reviewer],
    ).fetchone()[0]
    in_hand = db.execute(f"SELECT COUNT(*) {_IN_HAND_SQL}", [session_id, reviewer]).fetchone()[0]
    open_to_them = db.execute(
        f"SELECT COUNT(*) FROM ({_SESSION_TAKEN_SQL}) WHERE taken < ?",
        [overlap, hold_since, session_id, reviewer, overlap],
    ).fetchone()[0]
    n_battles, counted = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(MIN(n, ?)), 0) FROM (SELECT b.id, "
        "(SELECT COUNT(*) FROM votes v WHERE v.battle_id = b.id) AS n "
        "FROM battles b WHERE b.session_id = ? AND b.status = 'ready')",
        [overlap, session_id],
    ).fetchone()
    return ReviewerCounts(judged, in_hand, open_to_them, n_battles, counted)


def insert_vote(db: sqlite_utils.Database, row: dict[str, Any]) -> None:
    """Raises Conflict when this reviewer already voted on this battle (the UNIQUE key)."""
    try:
        db["votes"].insert({**row, "created_at": utc_now()})
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" not in str(exc):
            raise
        raise Conflict(
            f"you already voted on battle #{row['battle_id']}; a vote is locked once cast"
        ) from None


def get_vote(db: sqlite_utils.Database, battle_id: int, reviewer: str) -> Vote | None:
    row = next(
        db.query("SELECT * FROM votes WHERE battle_id = ? AND reviewer = ?", [battle_id, reviewer]),
        None,
    )
    return None if row is None else _vote(row)


def voted_battles(
    db: sqlite_utils.Database, session_id: int | None = None, *, include_checks: bool = False
) -> list[tuple[Battle, Vote]]:
    """Every vote with its battle, oldest first; one session's, or all (free battles too).
    Check battles (arena/gold.py) measure reviewers, not models: left out unless asked for
    (every reviewer judges them, so counted they would outweigh the other battles)."""
    sql = (
        "SELECT b.*, v.id AS v_id, v.reviewer AS v_reviewer, v.choice AS v_choice, "
        "v.score_a AS v_score_a, v.score_b AS v_score_b, v.comment AS v_comment, "
        "v.is_early AS v_is_early, v.created_at AS v_created_at "
        "FROM votes v JOIN battles b ON b.id = v.battle_id WHERE 1"
    )
    params: list[Any] = []
    if session_id is not None:
        sql += " AND b.session_id = ?"
        params.append(session_id)
    if not include_checks:
        sql += " AND b.gold_choice IS NULL"
    pairs = []
    for row in db.query(sql + " ORDER BY v.id", params):
        vote = {k[2:]: row.pop(k) for k in list(row) if k.startswith("v_")}
        pairs.append((_battle(row), _vote({**vote, "battle_id": row["id"]})))
    return pairs


def vote_times(db: sqlite_utils.Database, session_id: int | None = None) -> dict[tuple, float]:
    """Seconds from a battle being handed to a reviewer to their vote, by (battle, reviewer);
    free battles and votes without a hand-out have none."""
    sql = (
        "SELECT v.battle_id, v.reviewer, a.assigned_at, v.created_at FROM votes v "
        "JOIN battle_assignments a ON a.battle_id = v.battle_id AND a.reviewer = v.reviewer "
        "JOIN battles b ON b.id = v.battle_id"
    )
    params: list[Any] = []
    if session_id is not None:
        sql += " WHERE b.session_id = ?"
        params.append(session_id)
    return {
        (battle_id, reviewer): seconds_since(assigned, datetime.fromisoformat(voted))
        for battle_id, reviewer, assigned, voted in db.execute(sql, params)
    }


def has_votes(db: sqlite_utils.Database, model: str) -> bool:
    """Whether any vote was cast on a battle `model` took part in (either side)."""
    row = db.execute(
        "SELECT 1 FROM votes v JOIN battles b ON b.id = v.battle_id "
        "WHERE ? IN (b.model_a, b.model_b) LIMIT 1",
        [model],
    ).fetchone()
    return row is not None


def _session(row: dict[str, Any]) -> EvalSession:
    reviewers = json.loads(row["reviewers_json"]) if row["reviewers_json"] else None
    return to_record(
        EvalSession,
        row,
        contestants=[Contestant(**c) for c in json.loads(row["contestants_json"])],
        sampling=json.loads(row["sampling_json"]),
        reviewers=reviewers,
        status=SessionStatus(row["status"]),
    )


def _battle(row: dict[str, Any]) -> Battle:
    return to_record(
        Battle,
        row,
        conversation_a=json.loads(row["conversation_a_json"]),
        conversation_b=json.loads(row["conversation_b_json"]),
        sampling=json.loads(row["sampling_json"]),
        status=BattleStatus(row["status"]),
        is_check=bool(row["is_check"]),
    )


def _vote(row: dict[str, Any]) -> Vote:
    return to_record(Vote, row, choice=VoteChoice(row["choice"]), is_early=bool(row["is_early"]))
