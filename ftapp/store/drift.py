"""Tables of what a fine-tune cost: the drift probes (`probe_sets`, `probe_prompts` and
`probe_answers`: the base model's own answers, claimed by the answer queue through
store/answers.py), each variant's drift from its base (`variant_drift`) and the canary sets a
team marked "must not regress" (`canary_sets`)."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from ftapp.errors import Conflict, NotFound
from ftapp.store.answers import PROBE_ANSWERS_TABLE, insert_items
from ftapp.store.db import write_transaction
from ftapp.timeutil import utc_now


def find_probe_set(db: sqlite_utils.Database, base_model: str) -> dict[str, Any] | None:
    return next(db.query("SELECT * FROM probe_sets WHERE base_model = ?", [base_model]), None)


def insert_probe_set(
    db: sqlite_utils.Database,
    base_model: str,
    prompts: list[tuple[list[dict[str, str]], str]],
    contestants: list[dict[str, str]],
    sampling: dict[str, Any],
) -> int:
    """A base model's probe set: its prompts (messages, category) and one pending answer each,
    in one transaction; the set that exists already when another process made it first."""
    with write_transaction(db):
        found = find_probe_set(db, base_model)
        if found:
            return found["id"]
        set_id = db["probe_sets"].insert({
            "base_model": base_model, "contestants_json": json.dumps(contestants),
            "sampling_json": json.dumps(sampling), "created_at": utc_now(),
        }).last_pk  # fmt: skip
        insert_items(db, PROBE_ANSWERS_TABLE, set_id, [(m, None) for m, _ in prompts],
                     [c["name"] for c in contestants], 1)  # fmt: skip
        for position, (_, category) in enumerate(prompts, 1):
            db.execute("UPDATE probe_prompts SET category = ? WHERE set_id = ? AND position = ?",
                       [category, set_id, position])  # fmt: skip
    return set_id


def set_probe_status(db: sqlite_utils.Database, set_id: int, status: str) -> None:
    db["probe_sets"].update(set_id, {"status": status})


def probe_sets(db: sqlite_utils.Database, status: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT * FROM probe_sets" + (" WHERE status = ?" if status else "") + " ORDER BY id"
    return list(db.query(sql, [status] if status else []))


def probe_answers(db: sqlite_utils.Database, set_id: int) -> list[dict[str, Any]]:
    """The set's answers in the order of its prompts, each with its prompt's messages and
    category."""
    rows = db.query(
        "SELECT a.*, p.position, p.messages_json, p.category FROM probe_answers a "
        "JOIN probe_prompts p ON p.id = a.prompt_id WHERE a.set_id = ? ORDER BY p.position",
        [set_id],
    )
    return [{**row, "messages": json.loads(row["messages_json"])} for row in rows]


def save_base_likelihood(
    db: sqlite_utils.Database, answer_id: int, logprob: float, tokens: int
) -> None:
    db["probe_answers"].update(answer_id, {"logprob": logprob, "tokens": tokens})


def has_variants(db: sqlite_utils.Database, base_model: str) -> bool:
    return bool(next(db.query("SELECT 1 FROM model_variants WHERE base_model = ? LIMIT 1",
                              [base_model]), None))  # fmt: skip


def variants_to_measure(
    db: sqlite_utils.Database, set_id: int, base_model: str
) -> list[dict[str, Any]]:
    """Adapters and checkpoints of this base model without a drift measured on their current
    folder (never measured, or trained again since), oldest first."""
    return list(db.query(
        "SELECT v.name, v.path FROM model_variants v LEFT JOIN variant_drift d "
        "ON d.variant = v.name AND d.adapter_path = v.path AND d.set_id = ? "
        "WHERE v.base_model = ? AND d.id IS NULL ORDER BY v.id",
        [set_id, base_model],
    ))  # fmt: skip


def save_drift(db: sqlite_utils.Database, row: dict[str, Any]) -> None:
    """One variant's drift (replacing what was measured on an earlier folder of it)."""
    db["variant_drift"].upsert({**row, "computed_at": utc_now()}, pk="variant")


def drift_of(db: sqlite_utils.Database, variant: str) -> dict[str, Any] | None:
    row = next(db.query("SELECT * FROM variant_drift WHERE variant = ?", [variant]), None)
    if row is None:
        return None
    return {**row, "values": json.loads(row["values_json"]) if row["values_json"] else []}


def all_drift(db: sqlite_utils.Database) -> dict[str, dict[str, Any]]:
    """Every measured variant's drift row, by variant name."""
    return {row["variant"]: row for row in db.query("SELECT * FROM variant_drift")}


# --- canary sets -----------------------------------------------------------------------------


def insert_canary_set(db: sqlite_utils.Database, row: dict[str, Any]) -> int:
    if next(db.query("SELECT 1 FROM canary_sets WHERE name = ?", [row["name"]]), None):
        raise Conflict(f"a canary set named {row['name']!r} exists")
    return db["canary_sets"].insert({**row, "created_at": utc_now()}).last_pk


def canary_sets(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(db.query(
        "SELECT c.*, d.name || '@v' || v.version AS version_label FROM canary_sets c "
        "LEFT JOIN dataset_versions v ON v.id = c.dataset_version_id "
        "LEFT JOIN datasets d ON d.id = v.dataset_id ORDER BY c.id"
    ))  # fmt: skip


def delete_canary_set(db: sqlite_utils.Database, name: str) -> None:
    if not db.execute("DELETE FROM canary_sets WHERE name = ?", [name]).rowcount:
        raise NotFound(f"no canary set named {name!r}")
