"""Migrations of one feature: the Arena: prompt variants, the pool, sessions, battles and votes.
Append-only, like every migration."""

from __future__ import annotations

import sqlite_utils

from ftapp.store.migrations.script import run_script


def m005_arena(db: sqlite_utils.Database) -> None:
    """Why: the Arena. Prompt-engineered contestants, the pool free battles draw from,
    evaluation sessions with their prompts and pre-generated answers, battles (both answers,
    who sat where), who was given which battle, and votes: one per reviewer per battle,
    locked once cast (the identities are revealed then)."""
    run_script(
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


def m014_reviewer_checks(db: sqlite_utils.Database) -> None:
    """Why: reviewers checked for quality.

    - battles.gold_choice: the side known to be better ('a' or 'b'), on a battle an admin
      marked as a check; every reviewer's vote on it is scored for their accuracy, and it is
      open to every reviewer of the session, not only up to the overlap.
    - battles.is_check: a check battle made from a prompt with a known better and worse
      answer (not two contestants' answers): left out of ratings and preference datasets.
    - eval_sessions.min_gold_accuracy: the session's ratings are also shown without the votes
      of reviewers whose accuracy on checks is below it."""
    run_script(
        db,
        """
        ALTER TABLE battles ADD COLUMN gold_choice TEXT CHECK (gold_choice IN ('a', 'b'));
        ALTER TABLE battles ADD COLUMN is_check INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE eval_sessions ADD COLUMN min_gold_accuracy REAL
            CHECK (min_gold_accuracy BETWEEN 0 AND 1);
        """,
    )
