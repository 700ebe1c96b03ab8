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


def m013_what_tuning_cost(db: sqlite_utils.Database) -> None:
    """Why: what a fine-tune cost, and a promotion that refuses a regression without a reason.

    - probe_sets / probe_prompts / probe_answers: ftapp's general probe prompts, answered once
      per base model by the base model itself (greedy), in the background answer queue like
      session and run answers (the same columns, so the same claim and retry code), each
      answer with the base model's own log-probability of it and its token count.
    - variant_drift: how far each model variant moved from its base on those answers: the
      per-token cross-entropy under the variant minus under base (a KL estimate), per probe
      (values_json) and its mean with a 95% bootstrap interval. Keyed by the variant and the
      adapter folder it was measured on, so a variant trained again is measured again.
    - canary_sets: prompt sets a team marks "must not regress" (a dataset version's split or
      a prompt file kept in FTAPP_HOME); every new adapter is evaluated on each against base.
    - promotions.override_reason / gate_json: a promotion the gate would have refused (a
      canary that regressed, drift over the threshold) records why it went ahead, and what
      the gate saw, in the production history."""
    run_script(
        db,
        """
        CREATE TABLE probe_sets (
            id INTEGER PRIMARY KEY,
            base_model TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL DEFAULT 'generating'
                CHECK (status IN ('generating', 'ready', 'failed')),
            contestants_json TEXT NOT NULL,
            sampling_json TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE probe_prompts (
            id INTEGER PRIMARY KEY,
            set_id INTEGER NOT NULL REFERENCES probe_sets(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            messages_json TEXT NOT NULL,
            reference TEXT,
            category TEXT,
            UNIQUE (set_id, position)
        );
        CREATE TABLE probe_answers (
            id INTEGER PRIMARY KEY,
            set_id INTEGER NOT NULL REFERENCES probe_sets(id) ON DELETE CASCADE,
            prompt_id INTEGER NOT NULL REFERENCES probe_prompts(id) ON DELETE CASCADE,
            contestant TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'done', 'failed')),
            answer TEXT,
            error TEXT,
            latency_ms INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0,
            claimed_at TEXT,
            finished_at TEXT,
            logprob REAL,
            tokens INTEGER,
            UNIQUE (prompt_id, contestant)
        );
        CREATE INDEX probe_answers_status ON probe_answers(status, set_id);
        CREATE TABLE variant_drift (
            id INTEGER PRIMARY KEY,
            variant TEXT NOT NULL UNIQUE,
            adapter_path TEXT NOT NULL,
            set_id INTEGER NOT NULL REFERENCES probe_sets(id) ON DELETE CASCADE,
            status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
            mean REAL,
            low REAL,
            high REAL,
            n INTEGER NOT NULL DEFAULT 0,
            values_json TEXT,
            error TEXT,
            computed_at TEXT NOT NULL
        );
        CREATE TABLE canary_sets (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            dataset_version_id INTEGER REFERENCES dataset_versions(id),
            split TEXT,
            prompt_file TEXT,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            CHECK ((dataset_version_id IS NULL) <> (prompt_file IS NULL))
        );
        ALTER TABLE promotions ADD COLUMN override_reason TEXT;
        ALTER TABLE promotions ADD COLUMN gate_json TEXT;
        """,
    )


def m015_api_keys(db: sqlite_utils.Database) -> None:
    """Why: production callable by a team's services through the app's OpenAI-compatible API.

    - api_keys: one row a client key; only the SHA-256 of the key is kept (a key is 32
      random bytes, so a plain hash can't be guessed back) with its first characters to
      tell keys apart; the models it may call, its rate per minute, when it was revoked.
    - production_requests: which key asked (NULL for the Playground), the prompt's tokens,
      the time to the first token, the comment given with the feedback, and whether its
      prompt and answer are kept (text_kept 0: erased, or never stored for privacy, with
      messages_json '[]' and answer ''); promotion_id is NULL for a request to a named
      variant rather than to production; finish_reason: "length" when the reply used all the
      new tokens it was allowed, "stop" when it ended by itself.
    - canary_releases: a candidate answering a share of production (by API key or user, so
      one client sees one model) beside the stable model, until it is promoted or rolled
      back, by an admin or by itself; production_requests.canary_id marks the requests of a
      canary's window, whichever of the two answered."""
    run_script(
        db,
        """
        CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            key_hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            models_json TEXT NOT NULL,
            rate_per_min INTEGER CHECK (rate_per_min > 0),
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            revoked_at TEXT,
            revoked_by TEXT,
            last_used_at TEXT
        );
        ALTER TABLE production_requests ADD COLUMN key_name TEXT;
        ALTER TABLE production_requests ADD COLUMN prompt_tokens INTEGER;
        ALTER TABLE production_requests ADD COLUMN ttft_ms INTEGER;
        ALTER TABLE production_requests ADD COLUMN feedback_comment TEXT;
        ALTER TABLE production_requests ADD COLUMN text_kept INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE production_requests ADD COLUMN finish_reason TEXT;
        CREATE INDEX production_requests_key ON production_requests(key_name, created_at);
        CREATE TABLE canary_releases (
            id INTEGER PRIMARY KEY,
            candidate TEXT NOT NULL,
            stable TEXT NOT NULL,
            share REAL NOT NULL CHECK (share > 0 AND share < 1),
            started_at TEXT NOT NULL,
            started_by TEXT NOT NULL,
            ended_at TEXT,
            ended_by TEXT,
            outcome TEXT CHECK (outcome IN ('promoted', 'rolled back', 'rolled back by itself')),
            reason TEXT
        );
        ALTER TABLE production_requests ADD COLUMN canary_id INTEGER REFERENCES canary_releases(id)
        """,
    )
