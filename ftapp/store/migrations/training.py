"""Migrations of one feature: training jobs, their metrics and model variants, and export jobs.
Append-only, like every migration."""

from __future__ import annotations

import sqlite_utils

from ftapp.store.migrations.script import run_script


def m003_training(db: sqlite_utils.Database) -> None:
    """Why: training. Jobs queued by the web app or CLI and claimed by workers; the progress
    rows their training processes write; and the model variants (final adapters and every
    checkpoint) that serving, the arena and evaluation choose from."""
    run_script(
        db,
        """
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN
                ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
            config_json TEXT NOT NULL,
            dataset_version_id INTEGER NOT NULL REFERENCES dataset_versions(id),
            base_model TEXT NOT NULL,
            output_dir TEXT NOT NULL,
            log_path TEXT NOT NULL,
            device TEXT,
            worker_id TEXT,
            child_pid INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0,
            is_cancel_requested INTEGER NOT NULL DEFAULT 0,
            step INTEGER NOT NULL DEFAULT 0,
            total_steps INTEGER,
            epoch REAL,
            error TEXT,
            metrics_json TEXT,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            started_at TEXT,
            heartbeat_at TEXT,
            finished_at TEXT
        );
        CREATE INDEX jobs_status ON jobs(status, id);
        CREATE TABLE job_metrics (
            id INTEGER PRIMARY KEY,
            job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('train', 'eval')),
            step INTEGER NOT NULL,
            epoch REAL,
            loss REAL,
            learning_rate REAL,
            grad_norm REAL,
            tokens_per_second REAL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX job_metrics_job ON job_metrics(job_id, step);
        CREATE TABLE model_variants (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('adapter', 'checkpoint')),
            base_model TEXT NOT NULL,
            path TEXT NOT NULL,
            job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
            step INTEGER,
            eval_loss REAL,
            is_best INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        )
        """,
    )


def m004_job_waiting_reason(db: sqlite_utils.Database) -> None:
    """Why: one GPU shared by vLLM and training. A queued job that would not fit in the GPU
    memory left beside vLLM waits, and says why, instead of dying out of memory."""
    db.execute("ALTER TABLE jobs ADD COLUMN waiting_reason TEXT")


def m009_export_jobs(db: sqlite_utils.Database) -> None:
    """Why: merges and Hub pushes take minutes to hours (a 7B merge on a CPU, then the upload).
    They ran in a child process inside a web request, with no row: a closed page or a restarted
    app lost them, and nobody could see how far they got. Now each is a job with a row that
    the worker claims and runs like a training job (its own child process, a heartbeat), with
    a status, a log, the reason it failed and where the result went: the merged folder, or the
    pushed repo's URL and commit. `exports` still records each finished export."""
    run_script(
        db,
        """
        CREATE TABLE export_jobs (
            id INTEGER PRIMARY KEY,
            action TEXT NOT NULL CHECK (action IN ('merge', 'push')),
            model TEXT NOT NULL,
            out_dir TEXT,
            repo_id TEXT,
            is_merged INTEGER NOT NULL DEFAULT 0,
            is_private INTEGER NOT NULL DEFAULT 1,
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN
                ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
            log_path TEXT NOT NULL,
            worker_id TEXT,
            child_pid INTEGER,
            error TEXT,
            result_path TEXT,
            result_url TEXT,
            result_commit TEXT,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            started_at TEXT,
            heartbeat_at TEXT,
            finished_at TEXT
        );
        CREATE INDEX export_jobs_status ON export_jobs(status, id)
        """,
    )


def m011_preference_metrics(db: sqlite_utils.Database) -> None:
    """Why: DPO, ORPO and KTO report how the model's implicit rewards of the chosen and the
    rejected answers move (TRL's rewards/chosen, rewards/rejected, rewards/margins and, for
    pairs, rewards/accuracies); the Train tab draws them live beside the loss. NULL on SFT
    jobs, which report none of them."""
    run_script(
        db,
        """
        ALTER TABLE job_metrics ADD COLUMN rewards_chosen REAL;
        ALTER TABLE job_metrics ADD COLUMN rewards_rejected REAL;
        ALTER TABLE job_metrics ADD COLUMN rewards_margin REAL;
        ALTER TABLE job_metrics ADD COLUMN rewards_accuracy REAL
        """,
    )


def m016_job_runs(db: sqlite_utils.Database) -> None:
    """Why: a job runs on this machine or on a Ray cluster (issue 22), and its training code
    no longer writes the database: it emits events that the worker turns into rows.
    - runner: 'local' (a child process here) or 'ray' (a Ray job on a cluster).
    - run_id: the Ray job's submission id, so a worker that takes the job over follows the
      same Ray job instead of submitting it again; run_address: that cluster's job server.
    - event_offset: how much of the run's output (its log) the worker has turned into rows,
      moved in the same transaction as those rows: no event is recorded twice or lost when
      a worker dies and another one takes over."""
    run_script(
        db,
        """
        ALTER TABLE jobs ADD COLUMN runner TEXT NOT NULL DEFAULT 'local';
        ALTER TABLE jobs ADD COLUMN run_id TEXT;
        ALTER TABLE jobs ADD COLUMN run_address TEXT;
        ALTER TABLE jobs ADD COLUMN event_offset INTEGER NOT NULL DEFAULT 0
        """,
    )
