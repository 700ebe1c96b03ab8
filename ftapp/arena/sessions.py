"""Evaluation sessions: the human evaluation workflow.

An admin creates a session (prompts, two or more contestants, generation settings, how many
reviewers should judge each battle, who may take part). Every contestant's answer to every
prompt is generated once in the background (generation.py), so all reviewers judge the same
outputs and never wait. When the answers are in, the session opens: one battle per prompt
and pair of contestants, sides drawn at random.

Each reviewer then gets a queue: battles they haven't judged, the least-judged first, so
every battle reaches the overlap; a battle handed out is theirs until they vote, so a reload
or another day picks up where they left off. The database makes "never the same battle
twice" true even with many reviewers at once.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import zlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlite_utils

from ftapp.arena.contestants import resolve_contestants
from ftapp.arena.prompts import Prompt, load_prompts
from ftapp.auth import User
from ftapp.errors import Forbidden, NotFound, ValidationError
from ftapp.generation import progress
from ftapp.generation.progress import GenerationProgress
from ftapp.models.registry import BaseModel
from ftapp.records import EvalSession, Role, SessionStatus
from ftapp.serving.backend import Sampling
from ftapp.store import answers as answers_store
from ftapp.store import arena as store
from ftapp.store.answers import SESSION_ANSWERS_TABLE
from ftapp.store.db import write_transaction

SESSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,79}$")
MAX_OVERLAP = 50
MAX_INSTRUCTIONS_CHARS = 10_000
# A battle handed out but not voted on keeps its place in the overlap this long; after that
# another reviewer may take it (its first reviewer can still vote on it).
ASSIGNMENT_HOLD = timedelta(minutes=30)
# Battles read as candidates before the write lock: enough that a crowd of reviewers starting
# at once still finds one of theirs free (each has its own order), few enough to check fast.
CLAIM_CANDIDATES = 8


@dataclass(frozen=True)
class ReviewerProgress:
    judged: int  # votes this reviewer cast in the session
    remaining: int  # battles still open to them (the one in hand included)
    session_votes: int  # votes counted towards the overlap, all reviewers
    session_target: int  # battles x overlap

    @property
    def fraction(self) -> float:
        total = self.judged + self.remaining
        return self.judged / total if total else 1.0


@dataclass(frozen=True)
class SessionSummary:
    session: EvalSession
    answers: GenerationProgress
    n_battles: int
    n_votes: int
    failures: list[str]  # why answers failed, each reason once


# What a session should be able to tell apart: reviewers preferring one model 65/35.
PREFERENCE_TO_DETECT = 0.65


def votes_to_decide(preference: float = PREFERENCE_TO_DETECT) -> int:
    """Votes on one pair of models that a two-sided test at the 5% level needs to tell this
    preference from a coin toss four times in five (80% power; statsmodels' power analysis
    for one proportion, ties not counted)."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    effect = proportion_effectsize(preference, 0.5)
    return math.ceil(NormalIndPower().solve_power(effect, alpha=0.05, power=0.8, ratio=0))


def size_warning(n_prompts: int, overlap: int) -> str | None:
    """What a session of this size can't decide, said before anyone judges it; None when it
    is large enough. Each pair of contestants meets once per prompt, judged by `overlap`
    reviewers."""
    needed = votes_to_decide()
    votes = n_prompts * overlap
    if votes >= needed:
        return None
    return (
        f"With {n_prompts} prompts and {overlap} reviewer(s) per battle, each pair of "
        f"contestants gets at most {votes} votes: too few to tell a "
        f"{PREFERENCE_TO_DETECT:.0%}/{1 - PREFERENCE_TO_DETECT:.0%} preference from chance, "
        f"which takes about {needed} votes (for example {math.ceil(needed / overlap)} prompts "
        f"at this overlap, or more reviewers per battle)."
    )


def create_session(
    db: sqlite_utils.Database,
    base: BaseModel,
    *,
    name: str,
    prompts: list[Prompt],
    source: str,
    contestants: list[str],
    sampling: Sampling,
    overlap: int = 1,
    instructions: str = "",
    reviewers: list[str] | None = None,
    user: str,
) -> EvalSession:
    """Check everything, then write the session, its prompts and its pending answers at once."""
    name = (name or "").strip()
    if not SESSION_NAME.match(name):
        raise ValidationError(
            f"session name {name!r}: use 1-80 letters, digits, spaces, '.', '_' or '-'"
        )
    chosen = resolve_contestants(db, base, contestants)
    if len(chosen) < 2:
        raise ValidationError("a session needs at least two contestants")
    if not prompts:
        raise ValidationError("a session needs at least one prompt")
    if not (isinstance(overlap, int) and 1 <= overlap <= MAX_OVERLAP):
        raise ValidationError(f"overlap must be a whole number from 1 to {MAX_OVERLAP}")
    if len(instructions or "") > MAX_INSTRUCTIONS_CHARS:
        raise ValidationError(f"the instructions are over {MAX_INSTRUCTIONS_CHARS:,} characters")
    names = sorted({r.strip() for r in reviewers or [] if r.strip()})
    row = {
        "name": name,
        "instructions": (instructions or "").strip(),
        "source": source,
        "contestants_json": json.dumps([asdict(c) for c in chosen]),
        "sampling_json": json.dumps(asdict(sampling)),
        "overlap": overlap,
        "reviewers_json": json.dumps(names) if names else None,
        "created_by": user,
    }
    session_id = store.insert_session(db, row, [(p.messages, p.reference) for p in prompts])
    return store.get_session(db, session_id)


def start_session(
    db: sqlite_utils.Database,
    base: BaseModel,
    *,
    name: str,
    contestants: list[str],
    version: str | None = None,
    split: str = "test",
    prompt_file: Path | str | None = None,
    sampling: Sampling,
    overlap: int = 1,
    instructions: str = "",
    reviewers: str = "",
    user: str,
) -> EvalSession:
    """A session from the fields of the Arena's Manage form or `ftapp arena create-session`,
    the one way both build it: the prompts from a version's split or a file, the reviewers
    as comma-separated names (empty: everyone)."""
    prompts, source = load_prompts(db, version, split, prompt_file)
    return create_session(
        db, base, name=name, prompts=prompts, source=source, contestants=contestants,
        sampling=sampling, overlap=overlap, instructions=instructions,
        reviewers=(reviewers or "").split(","), user=user,
    )  # fmt: skip


def get_session(db: sqlite_utils.Database, name_or_id: str | int) -> EvalSession:
    """The session with this name (text) or id (a whole number); NotFound otherwise."""
    return store.get_session(db, name_or_id)


def all_sessions(db: sqlite_utils.Database) -> list[EvalSession]:
    """Every session, newest first."""
    return store.list_sessions(db)


def generation_progress(db: sqlite_utils.Database, session_id: int) -> GenerationProgress:
    return progress.generation_progress(db, SESSION_ANSWERS_TABLE, session_id)


def session_summaries(db: sqlite_utils.Database) -> list[SessionSummary]:
    """Every session, newest first, with its generation progress and vote counts."""
    summaries = []
    for session in store.list_sessions(db):
        n_battles, n_votes = store.battle_and_vote_counts(db, session.id)
        answers = generation_progress(db, session.id)
        failures = progress.failure_reasons(db, SESSION_ANSWERS_TABLE, session.id)
        summaries.append(SessionSummary(session, answers, n_battles, n_votes, failures))
    return summaries


def open_if_generated(
    db: sqlite_utils.Database,
    session_id: int,
    *,
    even_with_failures: bool = False,
    rng: random.Random | None = None,
) -> bool:
    """Open the session once every answer is generated: one battle per prompt and pair of
    contestants whose answers both exist, sides at random. With failed answers it waits for an
    admin (retry them, or open without their battles). Returns whether it is open now."""
    rng = rng or random.SystemRandom()
    with write_transaction(db):
        session = store.get_session(db, session_id)
        if session.status != SessionStatus.GENERATING:
            return session.status == SessionStatus.OPEN
        answered = generation_progress(db, session_id)
        if answered.remaining or (answered.failed and not even_with_failures):
            return False
        answers = {
            (row["prompt_id"], row["contestant"]): row
            for row in store.session_answers(db, session_id)
            if row["status"] == "done"
        }
        names = [c.name for c in session.contestants]
        n_battles = 0
        for prompt in store.session_prompts(db, session_id):
            for pair in itertools.combinations(names, 2):
                found = [answers.get((prompt["id"], name)) for name in pair]
                if None in found:
                    continue
                sides = list(zip(pair, found, strict=True))
                rng.shuffle(sides)
                store.insert_battle(db, _session_battle(session, prompt, sides))
                n_battles += 1
        if not n_battles:
            raise ValidationError(f"session {session.name!r} has no pair of answers to judge")
        store.set_session_status(db, session_id, SessionStatus.OPEN)
    return True


def retry_failed(db: sqlite_utils.Database, session_id: int) -> int:
    with write_transaction(db):
        session = store.get_session(db, session_id)
        if session.status != SessionStatus.GENERATING:
            raise ValidationError(f"session {session.name!r} is already {session.status}")
        return answers_store.retry_failed_answers(db, SESSION_ANSWERS_TABLE, session_id)


def close_session(db: sqlite_utils.Database, session_id: int) -> None:
    store.set_session_status(db, session_id, SessionStatus.CLOSED)


def may_take_part(session: EvalSession, user: User) -> bool:
    return user.role == Role.ADMIN or session.reviewers is None or user.name in session.reviewers


def sessions_for(db: sqlite_utils.Database, user: User) -> list[EvalSession]:
    """The open sessions this user may judge, newest first."""
    return [s for s in store.list_sessions(db) if _is_theirs(s, user)]


def session_for(db: sqlite_utils.Database, name: str, user: User) -> EvalSession:
    """The session named `name`, if it is one of `sessions_for(user)`. Any other name, taken or
    not, gets the same answer: a reviewer must not learn which sessions exist, or how far
    along the ones they are not in are."""
    try:  # by name only: get_session takes an int for an id
        session = store.get_session(db, name) if isinstance(name, str) else None
    except NotFound:
        session = None
    if session is None or not _is_theirs(session, user):
        raise NotFound(f"no evaluation session named {name!r} for you")
    return session


def _is_theirs(session: EvalSession, user: User) -> bool:
    return session.status == SessionStatus.OPEN and may_take_part(session, user)


def next_battle(
    db: sqlite_utils.Database,
    session_id: int,
    user: User,
    now: datetime | None = None,
) -> int | None:
    """The battle this reviewer should judge next, handed to them; None when they are done.

    Their unfinished battle comes first. Otherwise the least-judged battle they haven't seen,
    among those below the overlap (votes plus battles in other reviewers' hands), in an order
    of their own, so reviewers starting together spread over different battles.

    Read, then claim: the scan over the session's battles runs before the write lock (readers
    never wait in WAL mode), and under the lock only the chosen battle is checked again, so a
    busy session's writers queue behind a few index lookups, not behind a scan. A candidate
    whose count changed meanwhile gives way to the next; the hand-out happens in the same
    write as the check, so the overlap and "never the same battle twice" hold."""
    now = now or datetime.now(UTC)
    hold_since = (now - ASSIGNMENT_HOLD).isoformat(timespec="milliseconds")
    salt = zlib.crc32(user.name.encode())
    session = store.get_session(db, session_id)
    _check_can_judge(session, user)
    unfinished = store.unfinished_battle(db, session_id, user.name)
    if unfinished is not None:
        return unfinished
    overlap = session.overlap
    candidates = store.least_taken_battles(
        db, session_id, user.name, overlap, hold_since, salt, limit=CLAIM_CANDIDATES
    )
    if not candidates:
        return None
    with write_transaction(db):
        # Again under the lock: the session may have closed, and the same reviewer in a
        # second tab may have been handed a battle a moment ago.
        _check_can_judge(store.get_session(db, session_id), user)
        unfinished = store.unfinished_battle(db, session_id, user.name)
        if unfinished is not None:
            return unfinished
        unchanged = (
            battle_id for battle_id, taken in candidates
            if store.times_taken(db, battle_id, user.name, overlap, hold_since) == taken
        )  # fmt: skip
        chosen = next(unchanged, None)
        if chosen is None:  # every candidate was taken meanwhile: scan under the lock
            rescan = store.least_taken_battles(db, session_id, user.name, overlap, hold_since, salt)
            chosen = rescan[0][0] if rescan else None
        if chosen is not None:
            store.assign(db, chosen, user.name)
        return chosen


def reviewer_progress(
    db: sqlite_utils.Database, session_id: int, reviewer: str, now: datetime | None = None
) -> ReviewerProgress:
    now = now or datetime.now(UTC)
    hold_since = (now - ASSIGNMENT_HOLD).isoformat(timespec="milliseconds")
    session = store.get_session(db, session_id)
    counts = store.reviewer_counts(db, session_id, reviewer, session.overlap, hold_since)
    return ReviewerProgress(
        judged=counts.judged,
        remaining=counts.in_hand + counts.open_to_them,
        session_votes=counts.votes_counted,
        session_target=counts.n_battles * session.overlap,
    )


def _check_can_judge(session: EvalSession, user: User) -> None:
    if not may_take_part(session, user):
        raise Forbidden(f"{user.name} is not a reviewer of session {session.name!r}")
    if session.status != SessionStatus.OPEN:
        state = "still generating answers" if session.status == "generating" else "closed"
        raise ValidationError(f"session {session.name!r} is {state}")


def _session_battle(session: EvalSession, prompt: dict, sides: list[tuple[str, dict]]) -> dict:
    """A battle row from a prompt and its two answers, in the order they will be shown."""
    (model_a, answer_a), (model_b, answer_b) = sides

    def conversation(answer: dict) -> str:
        return json.dumps(
            [*prompt["messages"], {"role": "assistant", "content": answer["answer"]}],
            ensure_ascii=False,
        )

    return {
        "session_id": session.id,
        "prompt_id": prompt["id"],
        "model_a": model_a,
        "model_b": model_b,
        "conversation_a_json": conversation(answer_a),
        "conversation_b_json": conversation(answer_b),
        "sampling_json": json.dumps(session.sampling),
        "latency_a_ms": answer_a["latency_ms"],
        "latency_b_ms": answer_b["latency_ms"],
        "status": "ready",
        "created_by": session.created_by,
    }
