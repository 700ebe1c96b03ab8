"""Merges and Hub pushes as long jobs: queued with a row (`export_jobs`), run by the worker in a
child process (ftapp/deploy/child.py), watched through the row and the job's log.

The Deploy tab and `ftapp export merge|push` queue through `queue_merge` / `queue_push`, which
refuse bad input (an unknown variant, "base", a bad repo id, no token, an occupied folder)
before anything is written, and follow a job with `export_view` / `follow_export`. The web
process never loads model weights, and a merge that crashes or runs out of memory fails with
its reason while the app goes on.

A token typed into the page is never stored in the database: it waits in a file only its owner
can read (store/export_jobs.token_path) until the job's child starts and removes it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from ftapp.deploy.hub import check_repo_id
from ftapp.deploy.merge import check_free, default_merge_dir, variant_and_base
from ftapp.errors import Conflict, ValidationError
from ftapp.generation.chat import OpenDb
from ftapp.settings import Settings
from ftapp.store import export_jobs as store
from ftapp.store.db import write_transaction
from ftapp.store.export_jobs import ExportAction, ExportJob, ExportStatus
from ftapp.timeutil import seconds_since
from ftapp.training.jobs import tail_of_log

__all__ = ["ExportAction", "ExportJob", "ExportStatus"]  # re-exported for callers

# A job queued this long with no worker taking it: the line asks whether one is running.
WORKER_HINT_AFTER_S = 30


def queue_merge(
    db: sqlite_utils.Database,
    settings: Settings,
    model: str,
    user: str,
    out_dir: Path | None = None,
) -> ExportJob:
    """Queue merging variant `model` into its base model, written to `out_dir` (default
    FTAPP_HOME/exports/NAME-merged)."""
    variant, _ = variant_and_base(db, settings, model)
    out = Path(out_dir).resolve() if out_dir else default_merge_dir(settings, variant.name)
    check_free(out)
    row = {"action": ExportAction.MERGE.value, "model": variant.name,
           "out_dir": str(out) if out_dir else None, "created_by": user}  # fmt: skip
    return _insert(db, settings, row, token=None)


def queue_push(
    db: sqlite_utils.Database,
    settings: Settings,
    model: str,
    repo_id: str,
    user: str,
    *,
    merged: bool = False,
    private: bool = True,
    token: str | None = None,
) -> ExportJob:
    """Queue pushing variant `model` (or, `merged`, the model merged into its base) to the Hub
    repo `repo_id`. `token`: else HF_TOKEN or the saved `hf auth login` of the process that
    runs the job (the worker has the app's environment)."""
    from huggingface_hub import get_token

    repo_id = (repo_id or "").strip()
    check_repo_id(repo_id)
    if not (token or get_token()):
        raise ValidationError(
            "no Hugging Face token: set HF_TOKEN to a token with write access "
            "(https://huggingface.co/settings/tokens) or run `hf auth login`"
        )
    variant, _ = variant_and_base(db, settings, model)
    row = {"action": ExportAction.PUSH.value, "model": variant.name, "repo_id": repo_id,
           "is_merged": int(merged), "is_private": int(private), "created_by": user}  # fmt: skip
    return _insert(db, settings, row, token=token)


def _insert(
    db: sqlite_utils.Database, settings: Settings, row: dict, token: str | None
) -> ExportJob:
    with write_transaction(db):
        job_id = store.insert_export_job(db, {**row, "log_path": ""})
        store.set_log_path(db, job_id, str(settings.logs_dir / f"export-{job_id}.log"))
        if token:
            _write_token(store.token_path(settings.home, job_id), token)
    return store.get_export_job(db, job_id)


def _write_token(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token)


def take_token(home: Path, job_id: int) -> str | None:
    """The token given for job `job_id`, if any, removed from disk as it is read."""
    path = store.token_path(home, job_id)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    path.unlink(missing_ok=True)
    return token or None


def cancel_export(db: sqlite_utils.Database, settings: Settings, job_id: int) -> ExportJob:
    """Cancel a job no worker has started yet (a running merge or upload can't be stopped
    half-way without leaving it half-done)."""
    job = store.get_export_job(db, job_id)
    if not store.cancel_queued_export_job(db, job_id):
        raise Conflict(f"export job #{job_id} is {store.get_export_job(db, job_id).status.value}"
                       ": only a queued job can be cancelled")  # fmt: skip
    store.token_path(settings.home, job.id).unlink(missing_ok=True)
    return store.get_export_job(db, job_id)


# --- following a job ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportView:
    job: ExportJob
    line: str  # one line for people: what the job is, its status and result or reason
    log_tail: str


def describe(job: ExportJob) -> str:
    """The line of `export_view`; for a finished job, the line `ftapp export` printed before
    exports were jobs."""
    what = job.model + (" (merged)" if job.is_merged else "")
    if job.status == ExportStatus.SUCCEEDED:
        if job.action == ExportAction.MERGE:
            return f"merged {job.model} into {job.result_path}"
        commit = f" (commit {job.result_commit[:12]})" if job.result_commit else ""
        return f"pushed {what} to {job.result_url}{commit}"
    doing = (f"merge of {job.model}" if job.action == ExportAction.MERGE
             else f"push of {what} to {job.repo_id}")  # fmt: skip
    if job.status in (ExportStatus.FAILED, ExportStatus.CANCELLED):
        return f"export job #{job.id}, {doing}: {job.status.value}: {job.error}"
    waiting = seconds_since(job.created_at) if job.status == ExportStatus.QUEUED else 0
    if waiting > WORKER_HINT_AFTER_S:
        return (
            f"export job #{job.id}, {doing}: still queued after {waiting:.0f} s: is a worker "
            "running? (the app starts one unless FTAPP_WORKER=0; else run `ftapp worker`)"
        )
    return f"export job #{job.id}, {doing}: {job.status.value}"


def export_view(db: sqlite_utils.Database, job_id: int, lines: int = 20) -> ExportView:
    job = store.get_export_job(db, job_id)
    return ExportView(job, describe(job), tail_of_log(job.log_path, lines))


def follow_export(
    open_db: OpenDb,
    job_id: int,
    on_line: Callable[[str], object],
    poll_seconds: float = 1.0,
    on_waiting: Callable[[float], object] | None = None,
) -> ExportJob:
    """Wait until job `job_id` ends, passing each new line of its log to `on_line`; returns the
    job as it ended. `on_waiting(seconds)` is called while it is still queued."""
    shown = 0
    started = time.monotonic()
    while True:
        with open_db() as db:
            job = store.get_export_job(db, job_id)
        shown = _new_lines(job.log_path, shown, on_line)
        if job.status.is_finished:
            return job
        if job.status == ExportStatus.QUEUED and on_waiting is not None:
            on_waiting(time.monotonic() - started)
        time.sleep(poll_seconds)


def _new_lines(log_path: str, shown: int, on_line: Callable[[str], object]) -> int:
    """Pass the log's lines after the first `shown` to `on_line`; returns how many there are."""
    try:
        text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return shown
    # A progress bar redraws one line with carriage returns: show what a terminal would.
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")[:-1]]
    for line in lines[shown:]:
        on_line(line)
    return len(lines)
