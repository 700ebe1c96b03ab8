"""Migrations of one feature: datasets, examples, imports, frozen versions, base models and
preference data. Append-only, like every migration."""

from __future__ import annotations

import sqlite_utils

from ftapp.store.migrations.script import run_script


def m001_data_tables(db: sqlite_utils.Database) -> None:
    """Why: the Data tab. Datasets, their examples (current text, text as imported, raw row),
    an audit trail of review actions, import reports, and frozen versions whose rows can
    never be updated (training jobs reference them)."""
    run_script(
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


def m002_base_models(db: sqlite_utils.Database) -> None:
    """Why: the model registry. Local folders and hub downloads registered as base models."""
    run_script(
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


def m010_preference_data(db: sqlite_utils.Database) -> None:
    """Why: preference tuning (DPO, ORPO, KTO) trains on both answers of a pair, or on one
    answer with a good/bad label; until now a pair kept only its chosen answer as an SFT
    conversation. A dataset now has a kind: 'sft' (conversations) or 'preference'. A
    preference example keeps `messages_json` as the prompt with the chosen answer (so it reads
    and trains like a conversation where one is wanted), and beside it the rejected answer's
    turns (`rejected_json`, a pair) or its label (`label`, 1 good / 0 bad: an unpaired KTO
    row). `battle_id` links a pair made from Arena votes to its battle. Frozen versions carry
    the same columns."""
    run_script(
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
