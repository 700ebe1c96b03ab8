"""Pre-generating the answers of evaluation sessions in the background: the sessions' work
list for the batch generator (ftapp/evaluation/batch.py), which claims pending rows of
`session_answers`, generates them through the serving backend and writes them back. A
session whose answers are all in opens by itself (or waits for the admin when some failed).

The web app's `AnswerGenerator` thread runs it; `ftapp arena generate` runs
`generate_pending` from a terminal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ftapp.arena.battles import ChatFn, OpenDb
from ftapp.arena.sessions import open_if_generated
from ftapp.evaluation import batch
from ftapp.store import arena as store


def _open_session(open_db: OpenDb, session_id: int) -> None:
    with open_db() as db:
        open_if_generated(db, session_id)


SESSION_ANSWERS = batch.WorkList(
    name="session answer",
    group_column="session_id",
    claim=store.claim_answers,
    finish=store.finish_answer,
    waiting_groups=store.sessions_generating,
    complete=_open_session,
)


def generate_pending(
    open_db: OpenDb,
    chat: ChatFn,
    *,
    workers: int = 4,
    stop: threading.Event | None = None,
    is_ready: Callable[[], bool] = lambda: True,
) -> int:
    """Generate every pending session answer; open each session whose answers are all in.
    Returns how many answers were attempted."""
    return batch.generate_pending(
        open_db, chat, [SESSION_ANSWERS], workers=workers, stop=stop, is_ready=is_ready
    )
