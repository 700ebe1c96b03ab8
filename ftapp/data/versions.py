"""Freezing a dataset version: an immutable, content-hashed snapshot of the accepted examples
with their splits. Training jobs reference a version, so later edits never change what a
finished job trained on. Freezing unchanged content returns the existing version."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlite_utils

from ftapp.errors import ValidationError
from ftapp.records import DatasetVersion
from ftapp.store import datasets as store
from ftapp.store import versions as version_store
from ftapp.store.db import write_transaction
from ftapp.timeutil import utc_now


def freeze_version(
    db: sqlite_utils.Database, dataset: str, user: str, note: str = ""
) -> tuple[DatasetVersion, bool]:
    """Snapshot the accepted examples. Returns (version, created); created is False when the
    content equals an existing version, which is returned instead."""
    with write_transaction(db):
        target = store.get_dataset(db, dataset)
        rows = store.accepted_examples(db, target.id)
        if not rows:
            raise ValidationError(f"{dataset}: nothing to freeze, no example is accepted yet")
        unsplit = sum(1 for row in rows if row["split"] is None)
        if unsplit:
            raise ValidationError(
                f"{dataset}: {unsplit} accepted examples have no split yet; assign splits first"
            )
        digest = hashlib.sha256()
        for row in rows:
            parts = [row["split"], row["messages"], row["tools"]]
            if row["rejected"] is not None or row["label"] is not None:  # SFT hashes unchanged
                parts += [row["rejected"], row["label"]]
            digest.update(json.dumps(parts, ensure_ascii=False, sort_keys=True).encode() + b"\n")
        content_hash = digest.hexdigest()
        existing = version_store.list_versions(db, target.id)
        for version in existing:
            if version.content_hash == content_hash:
                return version, False
        counts = {name: sum(1 for row in rows if row["split"] == name)
                  for name in ("train", "validation", "test")}  # fmt: skip
        number = max((version.version for version in existing), default=0) + 1
        version_id = version_store.insert_version(
            db,
            {
                "dataset_id": target.id,
                "version": number,
                "content_hash": content_hash,
                "n_examples": len(rows),
                "n_train": counts["train"],
                "n_validation": counts["validation"],
                "n_test": counts["test"],
                "note": note,
                "created_at": utc_now(),
                "created_by": user,
            },
            [_frozen_row(row) for row in rows],
        )
    return version_store.get_version_by_id(db, version_id), True


def _frozen_row(row: dict[str, Any]) -> dict[str, Any]:
    def encoded(value: Any) -> str | None:
        return None if value is None else json.dumps(value, ensure_ascii=False)

    return {
        "example_id": row["example_id"],
        "split": row["split"],
        "messages_json": json.dumps(row["messages"], ensure_ascii=False),
        "tools_json": encoded(row["tools"]),
        "rejected_json": encoded(row["rejected"]),
        "label": None if row["label"] is None else int(row["label"]),
    }


def resolve_version(db: sqlite_utils.Database, reference: str) -> DatasetVersion:
    """A version from 'NAME@v3' (or 'NAME@3')."""
    name, _, number = reference.rpartition("@")
    if not name:
        raise ValidationError(f"a dataset version looks like NAME@v3, got {reference!r}")
    target = store.get_dataset(db, name)
    return version_store.get_version(db, target.id, version_store.parse_version_number(number))
