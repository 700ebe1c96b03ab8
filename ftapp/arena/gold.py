"""Check battles ("gold"): battles whose better side is known, mixed unannounced into every
reviewer's queue of a session, so each reviewer's accuracy can be measured (reviewers.py).

An admin marks a session battle as a check (which side is better), or adds one from a prompt
with a known better and a known worse answer. Every reviewer gets every check, so their votes
count for accuracy only, never for ratings or preference datasets (counted, a check would
weigh as many times as there are reviewers). A session may set the accuracy below which its
ratings are also shown without a reviewer's votes.
"""

from __future__ import annotations

import json
import random

import sqlite_utils

from ftapp.arena.sessions import get_session
from ftapp.errors import ValidationError
from ftapp.records import Battle, BattleStatus, SessionStatus
from ftapp.serving.backend import MAX_MESSAGE_CHARS
from ftapp.store import arena as store
from ftapp.store.db import write_transaction

SIDES = ("a", "b")
# The names on a check battle made from known answers (shown only in the reveal).
CHECK_BETTER, CHECK_WORSE = "check: better answer", "check: worse answer"


def mark_check(db: sqlite_utils.Database, battle_id: int, better: str) -> Battle:
    """Make a session battle a check: `better` ("a" or "b") is the side known to be better."""
    better = (better or "").strip().lower()
    if better not in SIDES:
        raise ValidationError(f"the better side is 'a' or 'b', got {better!r}")
    with write_transaction(db):
        battle = store.get_battle(db, battle_id)
        if battle.session_id is None:
            raise ValidationError(f"battle #{battle_id} is a free battle; checks are for sessions")
        if battle.status != BattleStatus.READY:
            raise ValidationError(f"battle #{battle_id} is {battle.status}, not ready")
        store.update_battle(db, battle_id, gold_choice=better)
    return store.get_battle(db, battle_id)


def add_check(
    db: sqlite_utils.Database,
    session: str,
    prompt: str,
    better_answer: str,
    worse_answer: str,
    user: str,
    rng: random.Random | None = None,
) -> Battle:
    """A check battle in the session from a prompt and two answers, one known to be better;
    which side it sits on is drawn at random, like any battle's."""
    texts = {"prompt": prompt, "better answer": better_answer, "worse answer": worse_answer}
    for field, text in texts.items():
        if not (text or "").strip():
            raise ValidationError(f"the {field} of a check is empty")
        if len(text) > MAX_MESSAGE_CHARS:
            raise ValidationError(f"the {field} is over {MAX_MESSAGE_CHARS:,} characters")
    if better_answer.strip() == worse_answer.strip():
        raise ValidationError("the better and the worse answer are the same: nothing to check")
    target = get_session(db, session)
    if target.status == SessionStatus.CLOSED:
        raise ValidationError(f"session {target.name!r} is closed")
    turn = [{"role": "user", "content": prompt.strip()}]
    sides = [(CHECK_BETTER, better_answer.strip()), (CHECK_WORSE, worse_answer.strip())]
    if (rng or random.Random()).random() < 0.5:
        sides.reverse()
    (model_a, answer_a), (model_b, answer_b) = sides
    battle_id = store.insert_battle(db, {
        "session_id": target.id, "prompt_id": None, "model_a": model_a, "model_b": model_b,
        "conversation_a_json": json.dumps([*turn, {"role": "assistant", "content": answer_a}]),
        "conversation_b_json": json.dumps([*turn, {"role": "assistant", "content": answer_b}]),
        "sampling_json": json.dumps(target.sampling), "status": "ready", "created_by": user,
        "gold_choice": "a" if model_a == CHECK_BETTER else "b", "is_check": 1,
    })  # fmt: skip
    return store.get_battle(db, battle_id)


def set_min_accuracy(db: sqlite_utils.Database, session: str, accuracy: float | None) -> None:
    """The accuracy on checks below which the session's ratings are also shown without a
    reviewer's votes (None: no such view)."""
    if accuracy is not None and not 0 <= accuracy <= 1:
        raise ValidationError(f"an accuracy is from 0 to 1, got {accuracy}")
    store.set_min_gold_accuracy(db, get_session(db, session).id, accuracy)


def check_candidates(db: sqlite_utils.Database, session: str) -> list[Battle]:
    """The session's ready battles, checks included (their better side shown), oldest first:
    what an admin picks from to mark one."""
    target = get_session(db, session)
    battles = [store.get_battle(db, i) for i in store.battle_ids(db, target.id)]
    return [b for b in battles if b.status == BattleStatus.READY]


def battle_from_label(db: sqlite_utils.Database, label: str) -> Battle:
    """The battle a picker label names ("#12 · the prompt", or just "12")."""
    number = (label or "").strip().lstrip("#").split(" ", 1)[0]
    if not number.isdigit():
        raise ValidationError(f"pick a battle from the list, got {label!r}")
    return store.get_battle(db, int(number))


def parse_accuracy(text: str | float | None) -> float | None:
    """A minimum accuracy as typed: empty for none, a share (0.8) or a percentage (80%)."""
    if text is None or str(text).strip() == "":
        return None
    raw = str(text).strip()
    try:
        value = float(raw.rstrip("%"))
    except ValueError:
        message = f"a minimum accuracy is a share or a percentage, got {raw!r}"
        raise ValidationError(message) from None
    return value / 100 if raw.endswith("%") or value > 1 else value
