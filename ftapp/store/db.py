"""Opening the database and writing to it safely from several processes.

Every unit of work opens its own connection (a sqlite-utils Database must not cross threads,
and Gradio runs handlers in threads). WAL lets readers run beside one writer; writers start
with BEGIN IMMEDIATE so they queue on the busy timeout instead of failing when a read lock
would have to be upgraded (measured: 0 busy errors with 4 writers, tens of thousands with a
plain BEGIN).

Within one process, writers to the same file also take a lock of this process first: they
wait their turn on it, woken the moment the writer before them commits, instead of in
SQLite's busy handler, which sleeps in growing steps (up to 100 ms) and made the slowest
Arena votes under load (benchmarks/load_arena.py). Other processes (the worker, the CLI)
still meet at SQLite's lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

BUSY_TIMEOUT_MS = 30_000
R = TypeVar("R")
_WRITERS: dict[str, threading.RLock] = {}  # a database file's path -> its writers' lock
_WRITERS_LOCK = threading.Lock()


def _writers_lock(db: sqlite_utils.Database) -> threading.RLock:
    path = db.execute("PRAGMA database_list").fetchone()[2]
    with _WRITERS_LOCK:
        return _WRITERS.setdefault(path, threading.RLock())


def connect(path: Path | str) -> sqlite_utils.Database:
    """A new connection with the house pragmas. Does not migrate."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=True)
    db = sqlite_utils.Database(conn)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA synchronous = NORMAL")
    return db


def open_db(path: Path | str) -> sqlite_utils.Database:
    """Open (creating if needed) the database at `path` in WAL mode, migrations applied."""
    from ftapp.store.migrations import migrations

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = connect(path)
    if db.journal_mode != "wal":
        db.enable_wal()
    migrations.apply(db)
    return db


class ThreadConnections:
    """Connections to one database for units of work, one kept per thread between them.

    Opening a connection costs ~0.8 ms, most of it SQLite reading the schema at the first
    statement, and an Arena round under load opened eight or more (the request check, the
    role check, the handler): a third of the app's CPU (benchmarks/load_arena.py). The
    connection a thread used last is handed to it again; a unit of work nested in another
    gets a connection of its own. What a unit of work left uncommitted is rolled back, as
    closing the connection did."""

    def __init__(self, path: Path | str):
        self.path = path
        self._local = threading.local()

    @contextmanager
    def connection(self) -> Iterator[sqlite_utils.Database]:
        db = getattr(self._local, "idle", None)
        if db is None:
            db = connect(self.path)
        self._local.idle = None
        kept = False
        try:
            yield db
        finally:
            try:
                if db.conn.in_transaction:
                    db.conn.rollback()
                if self._local.idle is None:
                    self._local.idle, kept = db, True
            finally:
                if not kept:
                    db.close()


@contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """All writes inside happen together or not at all (BEGIN IMMEDIATE ... COMMIT).

    Nested calls become savepoints through sqlite-utils' `atomic()`.
    """
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    # Reentrant: a thread that writes through a second connection inside a write meets
    # SQLite's busy timeout as before, not a deadlock of its own.
    with _writers_lock(db):
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.rollback()
            raise
        else:
            db.commit()


def to_record(cls: type[R], row: dict[str, Any], **converted: Any) -> R:
    """A frozen record from a row: columns named like the record's fields are copied as they
    are; `converted` gives the fields that need decoding (JSON, enums, booleans)."""
    plain = {f.name: row[f.name] for f in fields(cls) if f.name not in converted}
    return cls(**plain, **converted)
