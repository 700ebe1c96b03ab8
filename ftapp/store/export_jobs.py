"""Table `export_jobs`: merges and Hub pushes queued by the Deploy tab or `ftapp export`, run by
the worker in a child process of their own. The rules (what may be queued, how a job runs)
live in ftapp/deploy/export_jobs.py; this module is only the SQL and the record.

Claiming is done as for training jobs (store/jobs.claim_next_job): the oldest queued job is
marked running in one BEGIN IMMEDIATE transaction, so two workers never take the same one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlite_utils

from ftapp.errors import NotFound
from ftapp.store.db import to_record, write_transaction
from ftapp.timeutil import utc_now


class ExportAction(StrEnum):
    MERGE = "merge"  # the adapter merged into its base model, written as a model folder
    PUSH = "push"  # the adapter (or the merged model) uploaded to a Hugging Face Hub repo


class ExportStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self in (ExportStatus.SUCCEEDED, ExportStatus.FAILED, ExportStatus.CANCELLED)


@dataclass(frozen=True)
class ExportJob:
    id: int
    action: ExportAction
    model: str  # the model variant exported
    out_dir: str | None  # merge: the folder asked for (None: FTAPP_HOME/exports/NAME-merged)
    repo_id: str | None  # push: "owner/name"
    is_merged: bool  # push: the merged model instead of the adapter
    is_private: bool  # push: a private repo when it is created
    status: ExportStatus
    log_path: str
    worker_id: str | None
    child_pid: int | None
    error: str | None
    result_path: str | None  # merge: the folder written
    result_url: str | None  # push: the repo's URL
    result_commit: str | None  # push: the commit the upload made
    created_at: str
    created_by: str
    started_at: str | None
    heartbeat_at: str | None
    finished_at: str | None


def token_path(home: Path, job_id: int) -> Path:
    """Where a Hub token typed in for one push waits (mode 0600) until its job's child starts
    and removes it: beside the database, never in it (backups copy the database)."""
    return home / "export-tokens" / f"{job_id}.token"


def insert_export_job(db: sqlite_utils.Database, row: dict[str, Any]) -> int:
    return db["export_jobs"].insert({**row, "created_at": utc_now()}).last_pk


def set_log_path(db: sqlite_utils.Database, job_id: int, log_path: str) -> None:
    db.execute("UPDATE export_jobs SET log_path = ? WHERE id = ?", [log_path, job_id])


def get_export_job(db: sqlite_utils.Database, job_id: int) -> ExportJob:
    row = next(db.query("SELECT * FROM export_jobs WHERE id = ?", [job_id]), None)
    if row is None:
        raise NotFound(f"no export job #{job_id}")
    return _export_job(row)


def list_export_jobs(db: sqlite_utils.Database, limit: int = 50) -> list[ExportJob]:
    """The newest first."""
    rows = db.query("SELECT * FROM export_jobs ORDER BY id DESC LIMIT ?", [limit])
    return [_export_job(row) for row in rows]


def claim_next_export_job(
    db: sqlite_utils.Database, worker_id: str, job_id: int | None = None
) -> ExportJob | None:
    """Take the oldest queued export job (or job `job_id`, if it is still queued) for this
    worker and mark it running; None if there is none. Never the same job twice."""
    now = utc_now()
    with write_transaction(db):
        sql = "SELECT id FROM export_jobs WHERE status = 'queued'"
        params: list[Any] = []
        if job_id is not None:
            sql += " AND id = ?"
            params.append(job_id)
        row = db.execute(sql + " ORDER BY id LIMIT 1", params).fetchone()
        if row is None:
            return None
        db.execute(
            "UPDATE export_jobs SET status = 'running', worker_id = ?, started_at = ?, "
            "heartbeat_at = ? WHERE id = ?",
            [worker_id, now, now, row[0]],
        )
    return get_export_job(db, row[0])


def set_child_pid(db: sqlite_utils.Database, job_id: int, pid: int) -> None:
    db.execute("UPDATE export_jobs SET child_pid = ? WHERE id = ?", [pid, job_id])


def beat(db: sqlite_utils.Database, job_id: int) -> None:
    """The running job's process is alive (written every few seconds by its child)."""
    db.execute(
        "UPDATE export_jobs SET heartbeat_at = ? WHERE id = ? AND status = 'running'",
        [utc_now(), job_id],
    )


def succeed_export_job(
    db: sqlite_utils.Database,
    job_id: int,
    *,
    result_path: str | None = None,
    result_url: str | None = None,
    result_commit: str | None = None,
) -> bool:
    """A running job done, with where its result went. False if it was not running."""
    cursor = db.execute(
        "UPDATE export_jobs SET status = 'succeeded', error = NULL, result_path = ?, "
        "result_url = ?, result_commit = ?, finished_at = ? WHERE id = ? AND status = 'running'",
        [result_path, result_url, result_commit, utc_now(), job_id],
    )
    return cursor.rowcount == 1


def fail_export_job(db: sqlite_utils.Database, job_id: int, error: str) -> bool:
    """A running job failed with `error`. False if it had already finished."""
    cursor = db.execute(
        "UPDATE export_jobs SET status = 'failed', error = ?, finished_at = ? "
        "WHERE id = ? AND status = 'running'",
        [error, utc_now(), job_id],
    )
    return cursor.rowcount == 1


def cancel_queued_export_job(db: sqlite_utils.Database, job_id: int) -> bool:
    """Cancel a job no worker has taken yet. False if it was not queued any more."""
    cursor = db.execute(
        "UPDATE export_jobs SET status = 'cancelled', error = 'cancelled before it started', "
        "finished_at = ? WHERE id = ? AND status = 'queued'",
        [utc_now(), job_id],
    )
    return cursor.rowcount == 1


def stale_running_export_jobs(db: sqlite_utils.Database, heartbeat_before: str) -> list[ExportJob]:
    rows = db.query(
        "SELECT * FROM export_jobs WHERE status = 'running' AND heartbeat_at < ? ORDER BY id",
        [heartbeat_before],
    )
    return [_export_job(row) for row in rows]


def _export_job(row: dict[str, Any]) -> ExportJob:
    return to_record(
        ExportJob,
        row,
        action=ExportAction(row["action"]),
        status=ExportStatus(row["status"]),
        is_merged=bool(row["is_merged"]),
        is_private=bool(row["is_private"]),
    )
