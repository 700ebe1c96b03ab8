"""Tables `jobs`, `job_metrics` and `model_variants`.

Claiming is the one delicate part: `claim_next_job` picks the oldest waiting job and marks it
running in one BEGIN IMMEDIATE transaction, so two workers can never take the same job, and a
device never runs two jobs at once.
"""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from ftapp.errors import NotFound
from ftapp.records import Job, JobStatus, ModelVariant
from ftapp.store.db import to_record, write_transaction
from ftapp.timeutil import utc_now


def insert_job(db: sqlite_utils.Database, row: dict[str, Any]) -> int:
    return db["jobs"].insert({**row, "created_at": utc_now()}).last_pk


def get_job(db: sqlite_utils.Database, job_id: int) -> Job:
    row = next(db.query("SELECT * FROM jobs WHERE id = ?", [job_id]), None)
    if row is None:
        raise NotFound(f"no training job #{job_id}")
    return _job(row)


def list_jobs(db: sqlite_utils.Database, limit: int = 100) -> list[Job]:
    return [_job(row) for row in db.query("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", [limit])]


def update_job(db: sqlite_utils.Database, job_id: int, **changes: Any) -> None:
    if "metrics" in changes:
        changes["metrics_json"] = json.dumps(changes.pop("metrics"))
    db["jobs"].update(job_id, changes)


def claim_next_job(db: sqlite_utils.Database, worker_id: str, device: str) -> Job | None:
    """Take the oldest queued (or interrupted) job for this worker, or None. FIFO, one running
    job per device, never the same job twice."""
    now = utc_now()
    with write_transaction(db):
        busy = db.execute(
            "SELECT 1 FROM jobs WHERE status = 'running' AND device = ?", [device]
        ).fetchone()
        if busy:
            return None
        row = db.execute(
            "SELECT id FROM jobs WHERE status IN ('queued', 'interrupted') "
            "AND is_cancel_requested = 0 ORDER BY id LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        db.execute(
            "UPDATE jobs SET status = 'running', worker_id = ?, device = ?, child_pid = NULL, "
            "attempts = attempts + 1, started_at = COALESCE(started_at, ?), heartbeat_at = ?, "
            "error = NULL, waiting_reason = NULL WHERE id = ?",
            [worker_id, device, now, now, row[0]],
        )
    return get_job(db, row[0])


def next_queued_job(db: sqlite_utils.Database) -> Job | None:
    """The job claim_next_job would take next, without taking it."""
    row = db.execute(
        "SELECT id FROM jobs WHERE status IN ('queued', 'interrupted') "
        "AND is_cancel_requested = 0 ORDER BY id LIMIT 1"
    ).fetchone()
    return get_job(db, row[0]) if row else None


def finish_job(
    db: sqlite_utils.Database, job_id: int, status: JobStatus, error: str | None = None
) -> bool:
    """Move a running (or waiting) job to a final state. False if it had already finished."""
    cursor = db.execute(
        "UPDATE jobs SET status = ?, error = ?, finished_at = ? "
        "WHERE id = ? AND status NOT IN ('succeeded', 'failed', 'cancelled')",
        [status.value, error, utc_now(), job_id],
    )
    return cursor.rowcount == 1


def interrupt_job(
    db: sqlite_utils.Database, job_id: int, reason: str, *, count_attempt: bool = True
) -> bool:
    """Put a running job back in the queue as interrupted (it resumes from its last checkpoint)
    with `reason`. `count_attempt=False`: the worker was asked to stop, which is not a failed
    attempt, so it doesn't count towards the attempts limit. False if it was not running."""
    attempts = "" if count_attempt else "attempts = attempts - 1, "
    cursor = db.execute(
        f"UPDATE jobs SET status = 'interrupted', {attempts}error = ?, child_pid = NULL "
        "WHERE id = ? AND status = 'running'",
        [reason, job_id],
    )
    return cursor.rowcount == 1


def running_jobs(db: sqlite_utils.Database) -> list[Job]:
    rows = db.query("SELECT * FROM jobs WHERE status = 'running' ORDER BY id")
    return [_job(row) for row in rows]


def take_over_job(
    db: sqlite_utils.Database, job_id: int, old_worker_id: str | None, new_worker_id: str
) -> bool:
    """Make a running job `new_worker_id`'s if it is still `old_worker_id`'s (two workers
    taking over the same job: one wins). Its attempt and run stay the same."""
    cursor = db.execute(
        "UPDATE jobs SET worker_id = ?, heartbeat_at = ? WHERE id = ? AND status = 'running' "
        "AND worker_id IS ?",
        [new_worker_id, utc_now(), job_id, old_worker_id],
    )
    return cursor.rowcount == 1


def stale_running_jobs(db: sqlite_utils.Database, heartbeat_before: str) -> list[Job]:
    rows = db.query(
        "SELECT * FROM jobs WHERE status = 'running' AND heartbeat_at < ? ORDER BY id",
        [heartbeat_before],
    )
    return [_job(row) for row in rows]


def add_metric(db: sqlite_utils.Database, job_id: int, kind: str, step: int, **values: Any) -> None:
    db["job_metrics"].insert(
        {"job_id": job_id, "kind": kind, "step": step, **values, "created_at": utc_now()}
    )


def delete_metrics_after(db: sqlite_utils.Database, job_id: int, step: int) -> None:
    """A resumed job trains the steps after its checkpoint again: drop their first rows."""
    db.execute("DELETE FROM job_metrics WHERE job_id = ? AND step > ?", [job_id, step])


def job_metrics(db: sqlite_utils.Database, job_id: int) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM job_metrics WHERE job_id = ? ORDER BY step, id", [job_id]))


# --- model variants ------------------------------------------------------------------------


def add_variant(db: sqlite_utils.Database, row: dict[str, Any]) -> None:
    """Register (or refresh, after a resumed job saves again) a model variant by name."""
    db["model_variants"].upsert({**row, "created_at": utc_now()}, pk="name")


def mark_best_variant(db: sqlite_utils.Database, job_id: int, best_path: str) -> None:
    """Of a job's variants, the one saved at `best_path` is its best (lowest eval loss)."""
    db.execute(
        "UPDATE model_variants SET is_best = (path = ?) WHERE job_id = ?", [best_path, job_id]
    )


def list_variants(db: sqlite_utils.Database, job_id: int | None = None) -> list[ModelVariant]:
    sql, params = "SELECT * FROM model_variants", []
    if job_id is not None:
        sql += " WHERE job_id = ?"
        params.append(job_id)
    return [_variant(row) for row in db.query(sql + " ORDER BY id", params)]


def get_variant(db: sqlite_utils.Database, name: str) -> ModelVariant:
    row = next(db.query("SELECT * FROM model_variants WHERE name = ?", [name]), None)
    if row is None:
        raise NotFound(f"no model variant named {name!r}")
    return _variant(row)


def name_in_use(db: sqlite_utils.Database, name: str) -> bool:
    """Whether a job, a model variant or an arena prompt variant has this name (one namespace)."""
    return bool(db.execute(
        "SELECT 1 FROM jobs WHERE name = ? UNION SELECT 1 FROM model_variants WHERE name = ? "
        "UNION SELECT 1 FROM prompt_variants WHERE name = ?",
        [name, name, name],
    ).fetchone())  # fmt: skip


def _job(row: dict[str, Any]) -> Job:
    return to_record(
        Job,
        row,
        status=JobStatus(row["status"]),
        config=json.loads(row["config_json"]),
        is_cancel_requested=bool(row["is_cancel_requested"]),
        metrics=json.loads(row["metrics_json"]) if row["metrics_json"] else None,
    )


def _variant(row: dict[str, Any]) -> ModelVariant:
    return to_record(ModelVariant, row, is_best=bool(row["is_best"]))
