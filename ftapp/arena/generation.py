"""The Arena's use of the answer queue (ftapp/generation/): the work list of evaluation
sessions' answers. A session whose answers are all in opens by itself (or waits for the admin
when some failed).

The web app's `AnswerGenerator` thread runs it; `ftapp arena generate` runs
`generate_pending` from a terminal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ftapp.arena.sessions import open_if_generated
from ftapp.generation import queue
from ftapp.generation.chat import ChatFn, OpenDb
from ftapp.store.answers import SESSION_ANSWERS_TABLE, groups_generating


def _open_session(open_db: OpenDb, session_id: int) -> None:
    with open_db() as db:
        open_if_generated(db, session_id)


SESSION_ANSWERS = queue.WorkList(
    name="session answer",
    table=SESSION_ANSWERS_TABLE,
    waiting_groups=lambda db: groups_generating(db, SESSION_ANSWERS_TABLE),
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
    return queue.generate_pending(
        open_db, chat, [SESSION_ANSWERS], workers=workers, stop=stop, is_ready=is_ready
    )
