"""Pre-generating the answers of evaluation sessions, in the background, through the serving
backend.

The work list is the `session_answers` table: pending answers are claimed in a transaction,
generated several at a time (vLLM batches concurrent requests), and written back one by one,
so progress is visible while it runs and a restarted app carries on where it stopped (an
answer claimed by a generator that died is claimed again after STALE_AFTER). A failed answer
is retried; after MAX_ATTEMPTS it stays failed with its reason for the admin to see.

The web app runs an `AnswerGenerator` thread; `ftapp arena generate` runs `generate_pending`
from a terminal.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from typing import Any

from ftapp.arena.battles import ChatFn, OpenDb
from ftapp.arena.contestants import with_system_prompt
from ftapp.arena.sessions import open_if_generated
from ftapp.errors import FtappError
from ftapp.records import Contestant
from ftapp.serving.backend import Sampling
from ftapp.store import arena as store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
STALE_AFTER = timedelta(minutes=15)
POLL_SECONDS = 2.0


def generate_pending(
    open_db: OpenDb,
    chat: ChatFn,
    *,
    workers: int = 4,
    stop: threading.Event | None = None,
    is_ready: Callable[[], bool] = lambda: True,
) -> int:
    """Generate every pending answer of the sessions that are generating, `workers` at a time;
    open each session whose answers are all in. Returns how many answers were attempted.
    Nothing new is claimed while `is_ready()` is false (an engine starting or restarting)."""
    stop = stop or threading.Event()
    attempted = 0
    sessions: set[int] = set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ftapp-answers") as pool:
        running: set[Future] = set()
        while not stop.is_set():
            free = workers - len(running)
            claimed = _claim(open_db, free) if free and is_ready() else []
            for row in claimed:
                sessions.add(row["session_id"])
                running.add(pool.submit(_generate_one, open_db, chat, row))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            attempted += len(done)
            for future in done:
                future.result()  # _generate_one records failures itself; this re-raises bugs
        for future in running:
            future.result()
    with open_db() as db:
        for session_id in sessions | set(store.sessions_generating(db)):
            open_if_generated(db, session_id)
    return attempted


class AnswerGenerator:
    """A daemon thread of the web app that generates session answers whenever there are any.
    `wake()` after creating a session starts it at once instead of at the next poll."""

    def __init__(
        self, open_db: OpenDb, chat: ChatFn, workers: int, is_ready: Callable[[], bool]
    ) -> None:
        self._open_db = open_db
        self._chat = chat
        self._workers = workers
        self._is_ready = is_ready
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ftapp-generator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                generate_pending(self._open_db, self._chat, workers=self._workers,
                                 stop=self._stop, is_ready=self._is_ready)  # fmt: skip
            except Exception:  # a bug or a locked database: log it, try again at the next poll
                log.exception("generating session answers failed")
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()


def _claim(open_db: OpenDb, limit: int) -> list[dict[str, Any]]:
    stale_before = (datetime.now(UTC) - STALE_AFTER).isoformat(timespec="milliseconds")
    with open_db() as db:
        return store.claim_answers(db, limit, stale_before)


def _generate_one(open_db: OpenDb, chat: ChatFn, row: dict[str, Any]) -> None:
    contestant = next(
        Contestant(**c) for c in json.loads(row["contestants_json"])
        if c["name"] == row["contestant"]
    )  # fmt: skip
    messages = with_system_prompt(contestant, json.loads(row["messages_json"]))
    started = time.monotonic()
    try:
        answer = "".join(
            chat(contestant.model, messages, Sampling(**json.loads(row["sampling_json"])))
        )
    except Exception as exc:  # the engine's failure is this answer's, not the generator's
        reason = str(exc) if isinstance(exc, FtappError) else f"{type(exc).__name__}: {exc}"
        retry = row["attempts"] < MAX_ATTEMPTS
        log.warning("answer #%d (%s) failed: %s", row["id"], contestant.name, reason)
        with open_db() as db:
            store.finish_answer(
                db, row["id"], status="pending" if retry else "failed", error=reason
            )
        if retry:
            time.sleep(1)  # a restarting engine: don't spin through the attempts at once
        return
    latency_ms = round((time.monotonic() - started) * 1000)
    with open_db() as db:
        store.finish_answer(db, row["id"], status="done", answer=answer, latency_ms=latency_ms)
