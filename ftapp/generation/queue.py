"""The background answer queue: generating many answers through the serving backend, for
evaluation sessions (the Arena) and evaluation runs (automatic metrics) alike.

Each kind of answer has a work list over a table of answers with a status (ftapp/store/
answers.py, one module for both kinds). Pending answers are claimed in a transaction,
generated several at a time (vLLM batches concurrent requests) and written back one by one,
so progress is visible while it runs and a restarted app carries on where it stopped (an
answer claimed by a generator that died is claimed again after STALE_AFTER). A failed answer
is retried; after MAX_ATTEMPTS it stays failed with its reason for the admin to see, and an
admin's "retry failed" gives it MAX_ATTEMPTS fresh attempts, whatever its kind. When a pass
is over, each group (session, run) whose answers may all be in gets its `complete` step: a
session opens, a run is scored.

The web app runs an `AnswerGenerator` thread; `ftapp arena generate` and `ftapp eval
generate` run `generate_pending` from a terminal.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlite_utils

from ftapp.errors import FtappError
from ftapp.generation.chat import ChatFn, OpenDb, with_system_prompt
from ftapp.records import Contestant
from ftapp.serving.backend import Sampling
from ftapp.store import answers as store
from ftapp.store.answers import AnswerTable

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
STALE_AFTER = timedelta(minutes=15)
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class WorkList:
    """One table of answers to generate, and what to do when a group of them is in."""

    name: str  # for logs: "session answer", "evaluation answer"
    table: AnswerTable
    waiting_groups: Callable[[sqlite_utils.Database], list[int]]
    complete: Callable[[OpenDb, int], None]  # called for every group that may be complete


def generate_pending(
    open_db: OpenDb,
    chat: ChatFn,
    work_lists: Sequence[WorkList],
    *,
    workers: int = 4,
    stop: threading.Event | None = None,
    is_ready: Callable[[], bool] = lambda: True,
) -> int:
    """Generate every pending answer of the work lists, `workers` at a time, then complete
    every group that may be done. Returns how many answers were attempted. Nothing new is
    claimed while `is_ready()` is false (an engine starting or restarting)."""
    stop = stop or threading.Event()
    attempted = 0
    touched: dict[str, set[int]] = {work.name: set() for work in work_lists}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ftapp-answers") as pool:
        running: set[Future] = set()
        while not stop.is_set():
            for work in work_lists:
                free = workers - len(running)
                claimed = _claim(open_db, work, free) if free and is_ready() else []
                for row in claimed:
                    touched[work.name].add(row[work.table.group_column])
                    running.add(pool.submit(_generate_one, open_db, chat, work, row))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            attempted += len(done)
            for future in done:
                future.result()  # _generate_one records failures itself; this re-raises bugs
        for future in running:
            future.result()
    for work in work_lists:
        with open_db() as db:
            groups = touched[work.name] | set(work.waiting_groups(db))
        for group_id in sorted(groups):
            if not stop.is_set():
                work.complete(open_db, group_id)
    return attempted


class AnswerGenerator:
    """A daemon thread of the web app that generates answers whenever there are any.
    `wake()` after creating a session or a run starts it at once instead of at the next poll.
    Each pass first runs `before_pass` (e.g. making the evaluation runs due after a job)."""

    def __init__(
        self,
        open_db: OpenDb,
        chat: ChatFn,
        work_lists: Sequence[WorkList],
        workers: int,
        is_ready: Callable[[], bool],
        before_pass: Sequence[Callable[[OpenDb], object]] = (),
    ) -> None:
        self._open_db = open_db
        self._chat = chat
        self._work_lists = list(work_lists)
        self._workers = workers
        self._is_ready = is_ready
        self._before_pass = list(before_pass)
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
                for step in self._before_pass:
                    step(self._open_db)
                generate_pending(self._open_db, self._chat, self._work_lists,
                                 workers=self._workers, stop=self._stop,
                                 is_ready=self._is_ready)  # fmt: skip
            except Exception:  # a bug or a locked database: log it, try again at the next poll
                log.exception("generating answers failed")
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()


def _claim(open_db: OpenDb, work: WorkList, limit: int) -> list[dict[str, Any]]:
    stale_before = (datetime.now(UTC) - STALE_AFTER).isoformat(timespec="milliseconds")
    with open_db() as db:
        return store.claim_answers(db, work.table, limit, stale_before)


def _generate_one(open_db: OpenDb, chat: ChatFn, work: WorkList, row: dict[str, Any]) -> None:
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
        # The row was read before its claim counted this attempt.
        retry = row["attempts"] + 1 < MAX_ATTEMPTS
        log.warning("%s #%d (%s) failed: %s", work.name, row["id"], contestant.name, reason)
        with open_db() as db:
            status = "pending" if retry else "failed"
            store.finish_answer(db, work.table, row["id"], status=status, error=reason)
        if retry:
            time.sleep(1)  # a restarting engine: don't spin through the attempts at once
        return
    latency_ms = round((time.monotonic() - started) * 1000)
    with open_db() as db:
        store.finish_answer(
            db, work.table, row["id"], status="done", answer=answer, latency_ms=latency_ms
        )
