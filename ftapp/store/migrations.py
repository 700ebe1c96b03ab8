"""Schema changes, in order. Append-only: never edit a migration that has landed; add a new one,
with a comment saying why. Applied once at start-up by `open_db`."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("ftapp")


def _run(db: sqlite_utils.Database, script: str) -> None:
    for statement in script.split(";\n"):
        if statement.strip():
            db.execute(statement)


@migrations()
def m001_data_tables(db: sqlite_utils.Database) -> None:
    """Why: the Data tab. Datasets, their examples (current text, text as imported, raw row),
    an audit trail of review actions, import reports, and frozen versions whose rows can
    never be updated (training jobs reference them)."""
    _run(
        db,
        """
        CREATE TABLE datasets (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL DEFAULT '',
            split_ratios_json TEXT,
            split_seed INTEGER,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL
        );
        CREATE TABLE imports (
            id INTEGER PRIMARY KEY,
            dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
            file_name TEXT NOT NULL,
            file_type TEXT NOT NULL,
            source_format TEXT NOT NULL,
            on_error TEXT NOT NULL,
            n_rows INTEGER NOT NULL,
            n_imported INTEGER NOT NULL,
            n_rejected INTEGER NOT NULL,
            n_duplicates INTEGER NOT NULL,
            problems_json TEXT NOT NULL,
            duplicates_json TEXT NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL
        );
        CREATE TABLE examples (
            id INTEGER PRIMARY KEY,
            dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
            import_id INTEGER REFERENCES imports(id) ON DELETE SET NULL,
            source_line INTEGER,
            source_format TEXT NOT NULL,
            messages_json TEXT NOT NULL,
            original_messages_json TEXT,  -- NULL until the first edit: the text as imported
            raw_json TEXT NOT NULL,
            tools_json TEXT,
            content_hash TEXT NOT NULL,
            n_tokens INTEGER,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'accepted', 'rejected')),
            split TEXT CHECK (split IN ('train', 'validation', 'test')),
            tags_json TEXT NOT NULL DEFAULT '[]',
            note TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT,
            updated_by TEXT,
            reviewed_at TEXT,
            reviewed_by TEXT
        );
        CREATE INDEX examples_dataset_status ON examples(dataset_id, status);
        CREATE INDEX examples_dataset_split ON examples(dataset_id, split);
        CREATE INDEX examples_dataset_hash ON examples(dataset_id, content_hash);
        CREATE TABLE example_events (
            id INTEGER PRIMARY KEY,
            example_id INTEGER NOT NULL REFERENCES examples(id) ON DELETE CASCADE,
            action TEXT NOT NULL,
            detail_json TEXT NOT NULL DEFAULT '{}',
            user_name TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX example_events_example ON example_events(example_id);
        CREATE TABLE dataset_versions (
            id INTEGER PRIMARY KEY,
            dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            n_examples INTEGER NOT NULL,
            n_train INTEGER NOT NULL,
            n_validation INTEGER NOT NULL,
            n_test INTEGER NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            UNIQUE (dataset_id, version)
        );
        CREATE TABLE version_examples (
            version_id INTEGER NOT NULL REFERENCES dataset_versions(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            example_id INTEGER NOT NULL,
            split TEXT NOT NULL CHECK (split IN ('train', 'validation', 'test')),
            messages_json TEXT NOT NULL,
            tools_json TEXT,
            PRIMARY KEY (version_id, position)
        );
        CREATE TRIGGER dataset_versions_frozen BEFORE UPDATE ON dataset_versions
        BEGIN SELECT RAISE(ABORT, 'dataset versions are frozen'); END;
        CREATE TRIGGER version_examples_frozen BEFORE UPDATE ON version_examples
        BEGIN SELECT RAISE(ABORT, 'dataset versions are frozen'); END
        """,
    )


@migrations()
def m002_base_models(db: sqlite_utils.Database) -> None:
    """Why: the model registry. Local folders and hub downloads registered as base models."""
    _run(
        db,
        """
        CREATE TABLE base_models (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL CHECK (source IN ('local', 'hub')),
            path TEXT NOT NULL,
            hub_id TEXT,
            added_at TEXT NOT NULL
        )
        """,
    )


@migrations()
def m003_training(db: sqlite_utils.Database) -> None:
    """Why: training. Jobs queued by the web app or CLI and claimed by workers; the progress
    rows their training processes write; and the model variants (final adapters and every
    checkpoint) that serving, the arena and evaluation choose from."""
    _run(
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


@migrations()
def m004_job_waiting_reason(db: sqlite_utils.Database) -> None:
    """Why: one GPU shared by vLLM and training. A queued job that would not fit in the GPU
    memory left beside vLLM waits, and says why, instead of dying out of memory."""
    db.execute("ALTER TABLE jobs ADD COLUMN waiting_reason TEXT")


@migrations()
def m005_arena(db: sqlite_utils.Database) -> None:
    """Why: the Arena. Prompt-engineered contestants, the pool free battles draw from,
    evaluation sessions with their prompts and pre-generated answers, battles (both answers,
    who sat where), who was given which battle, and votes: one per reviewer per battle,
    locked once cast (the identities are revealed then)."""
    _run(
        db,
        """
        CREATE TABLE prompt_variants (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            model TEXT NOT NULL DEFAULT 'base',
            system_prompt TEXT NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL
        );
        CREATE TABLE arena_pool (
            contestant TEXT PRIMARY KEY,
            enabled_at TEXT NOT NULL,
            enabled_by TEXT NOT NULL
        );
        CREATE TABLE eval_sessions (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            instructions TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL,
            contestants_json TEXT NOT NULL,
            sampling_json TEXT NOT NULL,
            overlap INTEGER NOT NULL CHECK (overlap >= 1),
            reviewers_json TEXT,
            status TEXT NOT NULL DEFAULT 'generating'
                CHECK (status IN ('generating', 'open', 'closed')),
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            opened_at TEXT
        );
        CREATE TABLE session_prompts (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES eval_sessions(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            messages_json TEXT NOT NULL,
            reference TEXT,
            UNIQUE (session_id, position)
        );
        CREATE TABLE session_answers (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES eval_sessions(id) ON DELETE CASCADE,
            prompt_id INTEGER NOT NULL REFERENCES session_prompts(id) ON DELETE CASCADE,
            contestant TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'done', 'failed')),
            answer TEXT,
            error TEXT,
            latency_ms INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0,
            claimed_at TEXT,
            finished_at TEXT,
            UNIQUE (prompt_id, contestant)
        );
        CREATE INDEX session_answers_status ON session_answers(status, session_id);
        CREATE TABLE battles (
            id INTEGER PRIMARY KEY,
            session_id INTEGER REFERENCES eval_sessions(id) ON DELETE CASCADE,
            prompt_id INTEGER REFERENCES session_prompts(id) ON DELETE CASCADE,
            model_a TEXT NOT NULL,
            model_b TEXT NOT NULL,
            conversation_a_json TEXT NOT NULL,
            conversation_b_json TEXT NOT NULL,
            sampling_json TEXT NOT NULL,
            latency_a_ms INTEGER,
            latency_b_ms INTEGER,
            status TEXT NOT NULL DEFAULT 'generating'
                CHECK (status IN ('generating', 'ready', 'failed')),
            error TEXT,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            CHECK (model_a <> model_b)
        );
        CREATE INDEX battles_session ON battles(session_id);
        CREATE TABLE battle_assignments (
            battle_id INTEGER NOT NULL REFERENCES battles(id) ON DELETE CASCADE,
            reviewer TEXT NOT NULL,
            assigned_at TEXT NOT NULL,
            PRIMARY KEY (battle_id, reviewer)
        );
        CREATE INDEX battle_assignments_reviewer ON battle_assignments(reviewer);
        CREATE TABLE votes (
            id INTEGER PRIMARY KEY,
            battle_id INTEGER NOT NULL REFERENCES battles(id) ON DELETE CASCADE,
            reviewer TEXT NOT NULL,
            choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),
            score_a INTEGER CHECK (score_a BETWEEN 1 AND 5),
            score_b INTEGER CHECK (score_b BETWEEN 1 AND 5),
            comment TEXT NOT NULL DEFAULT '',
            is_early INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            UNIQUE (battle_id, reviewer)
        );
        CREATE TRIGGER votes_locked BEFORE UPDATE ON votes
        BEGIN SELECT RAISE(ABORT, 'a vote is locked once cast'); END
        """,
    )


@migrations()
def m006_users(db: sqlite_utils.Database) -> None:
    # Password sign-in: who may sign in, with which role. Only an Argon2id hash is stored.
    # Votes and labels keep the user's name as text, so removing a user keeps their history.
    _run(
        db,
        """
        CREATE TABLE users (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL CHECK (role IN ('admin', 'reviewer')),
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            password_changed_at TEXT NOT NULL
        );
        """,
    )


@migrations()
def m007_evaluation_and_deployment(db: sqlite_utils.Database) -> None:
    """Why: automatic evaluation, export and deployment.

    - eval_runs / eval_examples / eval_answers: an evaluation run's held-out examples and
      every contestant's answer to each, generated in the background (the answers table is
      the work list, claimed like session answers) and then scored: `scores_json` holds the
      per-answer metrics (numbers or null) and `details_json` what the checks said (e.g.
      flake8's codes). The first contestant of a run is its baseline.
    - eval_judgments: model-as-judge verdicts, one row per order, so position bias cancels.
    - exports: merged model folders and Hub pushes, linked from the variant they came from.
    - promotions: which model answers as "production"; the newest row is the current one,
      and a rollback is a new row (the history is never rewritten).
    - production_requests: what the production chat answered, how fast, and the thumbs."""
    _run(
        db,
        """
        CREATE TABLE eval_runs (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL,
            dataset_version_id INTEGER REFERENCES dataset_versions(id),
            contestants_json TEXT NOT NULL,
            sampling_json TEXT NOT NULL,
            checks_json TEXT NOT NULL,
            judge_json TEXT,
            status TEXT NOT NULL DEFAULT 'generating' CHECK (status IN
                ('generating', 'scoring', 'done', 'failed', 'cancelled')),
            error TEXT,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            finished_at TEXT
        );
        CREATE TABLE eval_examples (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            messages_json TEXT NOT NULL,
            reference TEXT,
            UNIQUE (run_id, position)
        );
        CREATE TABLE eval_answers (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
            example_id INTEGER NOT NULL REFERENCES eval_examples(id) ON DELETE CASCADE,
            contestant TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'done', 'failed')),
            answer TEXT,
            error TEXT,
            latency_ms INTEGER,
            n_tokens INTEGER,
            scores_json TEXT,
            details_json TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            claimed_at TEXT,
            finished_at TEXT,
            UNIQUE (example_id, contestant)
        );
        CREATE INDEX eval_answers_status ON eval_answers(status, run_id);
        CREATE TABLE eval_judgments (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
            example_id INTEGER NOT NULL REFERENCES eval_examples(id) ON DELETE CASCADE,
            contestant TEXT NOT NULL,
            opponent TEXT NOT NULL,
            contestant_position TEXT NOT NULL CHECK (contestant_position IN ('a', 'b')),
            winner TEXT NOT NULL CHECK (winner IN ('contestant', 'opponent', 'tie', 'invalid')),
            raw TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            UNIQUE (example_id, contestant, opponent, contestant_position)
        );
        CREATE TABLE exports (
            id INTEGER PRIMARY KEY,
            model TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('merged', 'hub_adapter', 'hub_merged')),
            target TEXT NOT NULL,
            url TEXT,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL
        );
        CREATE INDEX exports_model ON exports(model);
        CREATE TABLE promotions (
            id INTEGER PRIMARY KEY,
            model TEXT NOT NULL,
            is_rollback INTEGER NOT NULL DEFAULT 0,
            note TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL
        );
        CREATE TABLE production_requests (
            id INTEGER PRIMARY KEY,
            promotion_id INTEGER REFERENCES promotions(id),
            model TEXT NOT NULL,
            messages_json TEXT NOT NULL,
            answer TEXT NOT NULL DEFAULT '',
            error TEXT,
            latency_ms INTEGER NOT NULL,
            n_tokens INTEGER,
            feedback INTEGER CHECK (feedback IN (-1, 1)),
            feedback_at TEXT,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL
        );
        CREATE INDEX production_requests_time ON production_requests(created_at);
        CREATE INDEX production_requests_model ON production_requests(model, created_at)
        """,
    )


@migrations()
def m008_sign_in_sessions(db: sqlite_utils.Database) -> None:
    """Why: sign-in sessions kept on the server, so that a password reset, a removal, a role
    change or a sign-out ends them at once (Gradio's own tokens live in the web process's
    memory and never expire), and a log of sign-in attempts for rate limiting and for admins.

    - sign_in_sessions: one row per signed-in browser, keyed by a SHA-256 of the cookie's token
      (the token itself is never stored); ending a session deletes its row.
    - sign_in_attempts: every sign-in, failed or not, with the address it came from.
    """
    _run(
        db,
        """
        CREATE TABLE sign_in_sessions (
            token_hash TEXT PRIMARY KEY,
            user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            address TEXT NOT NULL,
            created_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL
        );
        CREATE INDEX sign_in_sessions_user ON sign_in_sessions(user_name);
        CREATE TABLE sign_in_attempts (
            id INTEGER PRIMARY KEY,
            user_name TEXT NOT NULL,
            address TEXT NOT NULL,
            succeeded INTEGER NOT NULL CHECK (succeeded IN (0, 1)),
            outcome TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX sign_in_attempts_user ON sign_in_attempts(user_name, at);
        CREATE INDEX sign_in_attempts_address ON sign_in_attempts(address, at);
        """,
    )


@migrations()
def m009_export_jobs(db: sqlite_utils.Database) -> None:
    """Why: merges and Hub pushes take minutes to hours (a 7B merge on a CPU, then the upload).
    They ran in a child process inside a web request, with no row: a closed page or a restarted
    app lost them, and nobody could see how far they got. Now each is a job with a row that
    the worker claims and runs like a training job (its own child process, a heartbeat), with
    a status, a log, the reason it failed and where the result went: the merged folder, or the
    pushed repo's URL and commit. `exports` still records each finished export."""
    _run(
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


@migrations()
def m010_preference_data(db: sqlite_utils.Database) -> None:
    """Why: preference tuning (DPO, ORPO, KTO) trains on both answers of a pair, or on one
    answer with a good/bad label; until now a pair kept only its chosen answer as an SFT
    conversation. A dataset now has a kind: 'sft' (conversations) or 'preference'. A
    preference example keeps `messages_json` as the prompt with the chosen answer (so it reads
    and trains like a conversation where one is wanted), and beside it the rejected answer's
    turns (`rejected_json`, a pair) or its label (`label`, 1 good / 0 bad: an unpaired KTO
    row). `battle_id` links a pair made from Arena votes to its battle. Frozen versions carry
    the same columns."""
    _run(
        db,
        """
        ALTER TABLE datasets ADD COLUMN kind TEXT NOT NULL DEFAULT 'sft'
            CHECK (kind IN ('sft', 'preference'));
        ALTER TABLE examples ADD COLUMN rejected_json TEXT;
        ALTER TABLE examples ADD COLUMN label INTEGER CHECK (label IN (0, 1));
        ALTER TABLE examples ADD COLUMN battle_id INTEGER;
        ALTER TABLE version_examples ADD COLUMN rejected_json TEXT;
        ALTER TABLE version_examples ADD COLUMN label INTEGER CHECK (label IN (0, 1))
        """,
    )
