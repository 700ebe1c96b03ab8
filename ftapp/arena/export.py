"""Taking the Arena's data away: every battle with its votes (CSV or JSONL), and the decided
votes as a preference dataset in TRL's conversational format, which the Data tab imports, so
the reviewers' judgements can train the next round.

Preference rows: {"prompt": [messages], "chosen": [messages], "rejected": [messages],
"battle_id": N}, where "prompt" is what both sides saw before the first answer and
chosen/rejected are the rest of each side's conversation. Which battles give a row (a win
decided by the majority of its reviewers; not a tie, a split vote, "both bad" or a failed
battle) is decided in arena/preferences.py.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import sqlite_utils

from ftapp.arena.preferences import preferences_from_votes
from ftapp.errors import ValidationError
from ftapp.files import atomic_write, write_records
from ftapp.store import arena as store

BATTLE_FORMATS = ("csv", "jsonl")
COLUMNS = [
    "battle_id", "session", "prompt", "model_a", "model_b", "answer_a", "answer_b",
    "conversation_a", "conversation_b", "sampling", "latency_a_ms", "latency_b_ms",
    "battle_status", "error", "battle_created_at", "reviewer", "choice", "winner",
    "score_a", "score_b", "comment", "is_early", "voted_at", "check_better",
]  # fmt: skip


def battle_records(db: sqlite_utils.Database, session: str | None = None) -> list[dict[str, Any]]:
    """One record per vote, plus one per battle nobody voted on (vote fields empty); check
    battles too, with their known better side."""
    session_id = store.get_session(db, session).id if session else None
    sessions = {s.id: s.name for s in store.list_sessions(db)}
    votes = defaultdict(list)
    for battle, vote in store.voted_battles(db, session_id, include_checks=True):
        votes[battle.id].append(vote)
    records = []
    for battle_id in store.battle_ids(db, session_id):
        battle = store.get_battle(db, battle_id)
        base = {
            "battle_id": battle.id,
            "session": sessions.get(battle.session_id, "") if battle.session_id else "",
            "prompt": battle.prompt,
            "model_a": battle.model_a,
            "model_b": battle.model_b,
            "answer_a": _last_answer(battle.conversation_a),
            "answer_b": _last_answer(battle.conversation_b),
            "conversation_a": battle.conversation_a,
            "conversation_b": battle.conversation_b,
            "sampling": battle.sampling,
            "latency_a_ms": battle.latency_a_ms,
            "latency_b_ms": battle.latency_b_ms,
            "battle_status": battle.status.value,
            "error": battle.error,
            "battle_created_at": battle.created_at,
            "check_better": battle.gold_choice or "",  # a check battle's known better side
        }
        for vote in votes.get(battle.id) or [None]:
            records.append({**base, **_vote_fields(battle, vote)})
    return records


def write_battles(
    db: sqlite_utils.Database, out: Path | str, fmt: str = "csv", session: str | None = None
) -> int:
    """Write battle records to `out` as CSV or JSONL; returns how many rows were written."""
    out = Path(out)
    if fmt not in BATTLE_FORMATS:
        raise ValidationError(f"battle export format must be one of {', '.join(BATTLE_FORMATS)}")
    records = battle_records(db, session)
    if not records:
        raise ValidationError("nothing to export: no battles yet")
    write_records(out, records, fmt, COLUMNS)
    return len(records)


def preference_records(
    db: sqlite_utils.Database, session: str | None = None
) -> list[dict[str, Any]]:
    """TRL preference rows from the decided votes, by the rules of arena/preferences.py."""
    session_id = store.get_session(db, session).id if session else None
    return [
        {"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "battle_id": p.battle_id}
        for p in preferences_from_votes(db, session_id).pairs
    ]


def write_preferences(
    db: sqlite_utils.Database, out: Path | str, session: str | None = None
) -> int:
    out = Path(out)
    if out.suffix.lower() != ".jsonl":
        raise ValidationError(
            f"{out.name}: the preference dataset is a JSONL file; name it *.jsonl"
        )
    rows = preference_records(db, session)
    if not rows:
        raise ValidationError("no decided votes yet (ties and 'both bad' give no preference)")
    with atomic_write(out) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)


def _vote_fields(battle, vote) -> dict[str, Any]:
    if vote is None:
        return {key: None for key in ("reviewer", "choice", "winner", "score_a", "score_b",
                                      "comment", "is_early", "voted_at")}  # fmt: skip
    winner = {"a": battle.model_a, "b": battle.model_b}.get(vote.choice, vote.choice)
    return {
        "reviewer": vote.reviewer,
        "choice": vote.choice.value,
        "winner": winner,
        "score_a": vote.score_a,
        "score_b": vote.score_b,
        "comment": vote.comment,
        "is_early": vote.is_early,
        "voted_at": vote.created_at,
    }


def _last_answer(conversation: list[dict[str, str]]) -> str:
    return next((m["content"] for m in reversed(conversation) if m["role"] == "assistant"), "")
