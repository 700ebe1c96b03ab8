"""Migrations of one feature: automatic evaluation and production.
Append-only, like every migration."""

from __future__ import annotations

import sqlite_utils

from ftapp.store.migrations.script import run_script


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
    run_script(
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


def m012_eval_preference_pairs(db: sqlite_utils.Database) -> None:
    """Why: preference accuracy. An evaluation run on a preference version's split scores,
    for each held-out pair, whether a contestant finds the chosen answer likelier than the
    rejected one. The run keeps each pair with its example (`pair_json`: {"chosen": turns,
    "rejected": turns}, null for an example that is not a pair), so it is scored after a
    restart, or rescored, from the run alone. The scores go where every other score of an
    answer goes (eval_answers.scores_json, "preference_accuracy" and "preference_margin")."""
    run_script(db, "ALTER TABLE eval_examples ADD COLUMN pair_json TEXT")
