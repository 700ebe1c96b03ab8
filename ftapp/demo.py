"""The public demo's starting point: a small sample dataset, a frozen version of it and an Arena
pool, so that a visitor can try every tab at once instead of first writing training data.

The sample (`demo_data/support_replies.jsonl`) is a task a small model visibly learns in a few
dozen steps: the support assistant of a fictional bike shop, Spoke & Chain, whose replies
always open with "Thanks for reaching out!" and sign off with "— Spoke & Chain support".
`seed_demo` writes it into a database that has no datasets yet, and does nothing otherwise.
"""

from __future__ import annotations

from pathlib import Path

import sqlite_utils

from ftapp.arena.contestants import add_prompt_variant, set_pool
from ftapp.data.importer import import_file
from ftapp.data.review import set_status_where
from ftapp.data.splits import assign_splits
from ftapp.data.versions import freeze_version
from ftapp.models.registry import BaseModel
from ftapp.models.tokens import ChatTokenCounter
from ftapp.names import BASE
from ftapp.settings import Settings
from ftapp.store import arena as arena_store
from ftapp.store.db import write_transaction

SAMPLE_FILE = Path(__file__).parent / "demo_data" / "support_replies.jsonl"
DATASET = "demo-support"
PROMPT_VARIANT = "concise-prompt"
SYSTEM_PROMPT = (
    "You are the customer-support assistant of Spoke & Chain, a friendly neighbourhood bike "
    "shop. Answer in one to three short, friendly sentences."
)
OPENING = "Thanks for reaching out!"
SIGN_OFF = "— Spoke & Chain support"
USER = "demo"
SPLIT_RATIOS = (0.8, 0.1, 0.1)


def seed_demo(db: sqlite_utils.Database, settings: Settings, base: BaseModel) -> str:
    """Give a database without datasets the sample dataset (all examples accepted, split
    80/10/10, frozen as version 1), a prompt-engineered contestant and an Arena pool of the
    base model and that contestant. Returns what it did, in one line."""
    if _has_datasets(db):
        return "demo data: nothing to do, the database already has datasets"
    count_tokens = ChatTokenCounter(base.path)  # loaded outside the write lock: it takes a second
    with write_transaction(db):
        # Checked again under the lock: two processes starting at once seed only once.
        if _has_datasets(db):
            return "demo data: nothing to do, the database already has datasets"
        report = import_file(
            db,
            SAMPLE_FILE,
            DATASET,
            count_tokens=count_tokens,
            max_tokens=settings.max_tokens,
            on_error="abort",  # the sample is ours: a bad row is a bug, not something to skip
            user=USER,
        )
        set_status_where(db, DATASET, "accepted", USER)
        assign_splits(db, DATASET, SPLIT_RATIOS, seed=0)
        version, _ = freeze_version(db, DATASET, USER, note="the demo's sample data")
        if PROMPT_VARIANT not in {c.name for c in arena_store.list_prompt_variants(db)}:
            add_prompt_variant(db, base, PROMPT_VARIANT, SYSTEM_PROMPT, user=USER)
        set_pool(db, base, [BASE, PROMPT_VARIANT], USER)
    return (
        f"demo data: imported {report.n_imported} examples as {version.label} "
        f"({version.n_train} train, {version.n_validation} validation, {version.n_test} test); "
        f"Arena pool: {BASE} and {PROMPT_VARIANT}"
    )


def _has_datasets(db: sqlite_utils.Database) -> bool:
    return next(db["datasets"].rows_where(limit=1), None) is not None
