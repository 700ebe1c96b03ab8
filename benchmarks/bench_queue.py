"""The reviewer queue's cost as a session grows, at the core level: no app, no HTTP, the
functions the Arena's handlers call, on a real SQLite file.

    .venv/bin/python benchmarks/bench_queue.py [--battles 1000,10000,100000]
        [--reviewers 50,500] [--seconds 8] [--threads 8]

For each number of battles, a fresh database with one open evaluation session (overlap 3) of
that many battles; the answers are written straight into the table (the engine plays no part
in judging a session). For each number of reviewers, two ways of handing out the next battle:

- baseline: the hand-out as it was before issue 23, kept below: the scan of the session's
  battles inside the write transaction (BEGIN IMMEDIATE), so every other writer waits for it;
- ftapp: `ftapp.arena.sessions.next_battle`, read then claim: the scan before the write
  lock, and under it only the chosen battle checked again.

Each runs --threads threads (Gradio's per-event limit is 8) for --seconds, every thread a
reviewer after another taking a round: the next battle, a vote on it, the progress line the
page shows after the vote (`reviewer_progress`). Reported: rounds/s, the hand-out's and the
vote's p50/p95 per call, and how long each hand-out held the write lock (p50/p95). The
database is copied fresh for every run. Nothing is asserted; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
import zlib
from collections import defaultdict
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ftapp.arena.sessions as sessions  # noqa: E402
from ftapp.arena.battles import record_vote  # noqa: E402
from ftapp.arena.sessions import ASSIGNMENT_HOLD, reviewer_progress  # noqa: E402
from ftapp.auth import User  # noqa: E402
from ftapp.records import Role  # noqa: E402
from ftapp.store import arena as store  # noqa: E402
from ftapp.store import db as store_db  # noqa: E402
from ftapp.store.db import connect  # noqa: E402

OVERLAP = 3
VOTES = ["a", "b", "tie", "both_bad"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--battles", default="1000,10000,100000")
    parser.add_argument("--reviewers", default="50,500")
    parser.add_argument("--seconds", type=float, default=8.0, help="per run")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "ftapp-data" / "models",
    )
    return parser.parse_args()  # fmt: skip


# --- the session ------------------------------------------------------------------------------


def build_session(home: Path, models_dir: Path, n_battles: int) -> tuple[Path, int]:
    """A home whose database holds one open session of `n_battles` battles (base against
    concise, one battle per prompt); returns the database's path and the session's id."""
    from ftapp.arena.contestants import add_prompt_variant
    from ftapp.arena.prompts import Prompt
    from ftapp.arena.sessions import create_session, open_if_generated
    from ftapp.services import Services
    from ftapp.serving.backend import Sampling
    from ftapp.settings import Settings
    from ftapp.store.db import open_db

    home.mkdir(parents=True)
    (home / "models").symlink_to(models_dir.resolve(), target_is_directory=True)
    settings = Settings(home=home, backend="echo")
    settings.ensure_dirs()
    open_db(settings.db_path).close()
    services = Services(settings)
    with services.db() as db:
        add_prompt_variant(db, services.served_base, "concise", "Answer in one line.", user="b")
        prompts = [Prompt([{"role": "user", "content": f"question {i}"}]) for i in range(n_battles)]
        session = create_session(
            db, services.served_base, name="load", prompts=prompts, source="benchmark",
            contestants=["base", "concise"], sampling=Sampling(max_new_tokens=16),
            overlap=OVERLAP, user="b",
        )  # fmt: skip
        db.execute(
            "UPDATE session_answers SET status = 'done', latency_ms = 5, "
            "answer = 'An answer of a few words to ' || prompt_id WHERE session_id = ?",
            [session.id],
        )
        db.conn.commit()
        assert open_if_generated(db, session.id, rng=random.Random(0))
    return settings.db_path, session.id


# --- the two hand-outs ------------------------------------------------------------------------


def scan_under_lock(db, session_id: int, user: User) -> int | None:
    """The hand-out before issue 23: everything, the scan included, in the write transaction."""
    hold_since = (datetime.now(UTC) - ASSIGNMENT_HOLD).isoformat(timespec="milliseconds")
    with sessions.write_transaction(db):  # the name the benchmark puts a clock around
        session = store.get_session(db, session_id)
        unfinished = store.unfinished_battle(db, session_id, user.name)
        if unfinished is not None:
            return unfinished
        salt = zlib.crc32(user.name.encode())
        found = store.least_taken_battles(db, session_id, user.name, session.overlap,
                                          hold_since, salt)  # fmt: skip
        if not found:
            return None
        store.assign(db, found[0][0], user.name)
        return found[0][0]


class LockTimes:
    """How long each write transaction of a hand-out held the lock: `write_transaction` as the
    hand-outs see it, with a clock around it (SQLite takes the lock at BEGIN IMMEDIATE)."""

    def __init__(self) -> None:
        self.held: list[float] = []
        self.lock = threading.Lock()

    @contextmanager
    def timed_transaction(self, db):
        with store_db.write_transaction(db):
            started = time.perf_counter()
            yield db
        with self.lock:
            self.held.append(time.perf_counter() - started)


# --- one run ----------------------------------------------------------------------------------


def run(db_path: Path, session_id: int, names: list[str], hand_out, seconds: float,
        threads: int) -> dict:  # fmt: skip
    """`threads` threads taking rounds for `seconds`, each thread with reviewers of its own
    (a reviewer is one person: one round at a time), each round by the next of them; the
    figures of the run."""
    timings: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    rounds = 0
    threads = min(threads, len(names))

    def reviewer_rounds(seed: int) -> None:
        nonlocal rounds
        rng = random.Random(seed)
        mine = itertools.cycle(names[seed::threads])
        db = connect(db_path)
        try:
            while time.monotonic() < deadline:
                name = next(mine)
                user = User(name, Role.REVIEWER)
                started = time.perf_counter()
                battle_id = hand_out(db, session_id, user)
                handed = time.perf_counter()
                if battle_id is None:
                    continue
                record_vote(db, battle_id, name, rng.choice(VOTES))
                voted = time.perf_counter()
                reviewer_progress(db, session_id, name)
                shown = time.perf_counter()
                with lock:
                    timings["next"].append(handed - started)
                    timings["vote"].append(voted - handed)
                    timings["progress"].append(shown - voted)
                    rounds += 1
        finally:
            db.close()

    workers = [threading.Thread(target=reviewer_rounds, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.monotonic() - started
    return {"rounds_per_s": rounds / wall, **timings}


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy, what is still in the WAL file included (SQLite's backup API)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    sqlite3.connect(target).execute("PRAGMA journal_mode = WAL").connection.close()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000 if values else 0


def main() -> int:
    args = parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sizes = [int(n) for n in args.battles.split(",")]
    crowds = [int(n) for n in args.reviewers.split(",")]
    print(f"{os.cpu_count()} CPUs, {args.threads} threads, {args.seconds:.0f} s a run, "
          f"overlap {OVERLAP}")  # fmt: skip
    print("\n| battles | reviewers | hand-out | rounds/s | next p50 / p95 ms | "
          "lock held p50 / p95 ms | vote p50 / p95 ms | progress p50 ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="ftapp-queue-") as tmp:
        for n_battles in sizes:
            built = time.monotonic()
            db_path, session_id = build_session(Path(tmp) / f"home-{n_battles}",
                                                args.models_dir, n_battles)  # fmt: skip
            print(f"<!-- {n_battles} battles built in {time.monotonic() - built:.0f} s -->")
            for n_reviewers in crowds:
                names = [f"r{i:03d}" for i in range(n_reviewers)]
                for label, hand_out in (
                    ("baseline: scan under the lock", scan_under_lock),
                    ("ftapp: read, then claim", sessions.next_battle),
                ):
                    copy = Path(tmp) / "run.db"
                    copy_database(db_path, copy)
                    times = LockTimes()
                    # Both hand-outs call write_transaction by this module-level name.
                    sessions.write_transaction = times.timed_transaction
                    try:
                        result = run(copy, session_id, names, hand_out, args.seconds,
                                     args.threads)  # fmt: skip
                    finally:
                        sessions.write_transaction = store_db.write_transaction
                    cells = [
                        f"{result['rounds_per_s']:.1f}",
                        f"{quantile(result['next'], .5):.1f} / {quantile(result['next'], .95):.1f}",
                        f"{quantile(times.held, .5):.1f} / {quantile(times.held, .95):.1f}",
                        f"{quantile(result['vote'], .5):.1f} / {quantile(result['vote'], .95):.1f}",
                        f"{quantile(result['progress'], .5):.1f}",
                    ]  # fmt: skip
                    print(f"| {n_battles:,} | {n_reviewers} | {label} | {' | '.join(cells)} |",
                          flush=True)  # fmt: skip
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
