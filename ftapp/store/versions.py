"""Tables `dataset_versions` and `version_examples`: frozen, content-hashed snapshots.

Rows are only ever inserted; triggers in the schema refuse any UPDATE, so what a training job
read from a version stays what it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import sqlite_utils

from ftapp.errors import NotFound, ValidationError
from ftapp.records import DatasetVersion, Split, parse_choice
from ftapp.store.datasets import decode_example_row
from ftapp.store.db import to_record

VERSION_REF = re.compile(r"^v?(\d+)$")


def parse_version_number(text: str | int) -> int:
    match = VERSION_REF.match(str(text).strip())
    if not match:
        raise ValidationError(f"version must look like 3 or v3, got {text!r}")
    return int(match.group(1))


def list_versions(db: sqlite_utils.Database, dataset_id: int) -> list[DatasetVersion]:
    rows = db.query(
        "SELECT v.*, d.name AS dataset FROM dataset_versions v JOIN datasets d "
        "ON d.id = v.dataset_id WHERE v.dataset_id = ? ORDER BY v.version",
        [dataset_id],
    )
    return [_version(row) for row in rows]


def get_version(db: sqlite_utils.Database, dataset_id: int, version: int) -> DatasetVersion:
    for candidate in list_versions(db, dataset_id):
        if candidate.version == version:
            return candidate
    raise NotFound(f"dataset has no version v{version}")


def get_version_by_id(db: sqlite_utils.Database, version_id: int) -> DatasetVersion:
    row = next(
        db.query(
            "SELECT v.*, d.name AS dataset FROM dataset_versions v JOIN datasets d "
            "ON d.id = v.dataset_id WHERE v.id = ?",
            [version_id],
        ),
        None,
    )
    if row is None:
        raise NotFound(f"no dataset version #{version_id}")
    return _version(row)


def insert_version(
    db: sqlite_utils.Database, row: dict[str, Any], examples: list[dict[str, Any]]
) -> int:
    """Insert a version and its rows (call inside a write transaction). Returns its id."""
    version_id = db["dataset_versions"].insert(row).last_pk
    for position, example in enumerate(examples):
        example.update(version_id=version_id, position=position)
    db["version_examples"].insert_all(examples, batch_size=1000)
    return version_id


def version_rows(
    db: sqlite_utils.Database, version_id: int, split: str | None = None
) -> Iterator[dict[str, Any]]:
    """The frozen examples of a version in order (store.datasets.decode_example_row)."""
    sql = "SELECT * FROM version_examples WHERE version_id = ?"
    params: list[Any] = [version_id]
    if split:
        sql += " AND split = ?"
        params.append(parse_choice(Split, split, "split").value)
    for row in db.query(sql + " ORDER BY position", params):
        yield decode_example_row(row)


def count_pairs(db: sqlite_utils.Database, version_id: int, split: str) -> int:
    """How many of a version's examples in the split are pairs (have a rejected answer)."""
    return db.execute(
        "SELECT COUNT(*) FROM version_examples WHERE version_id = ? AND split = ? "
        "AND rejected_json IS NOT NULL",
        [version_id, parse_choice(Split, split, "split").value],
    ).fetchone()[0]


def _version(row: dict[str, Any]) -> DatasetVersion:
    return to_record(DatasetVersion, row)


def all_versions(db: sqlite_utils.Database) -> list[DatasetVersion]:
    """Every frozen version of every dataset, newest first (for pickers)."""
    rows = db.query(
        "SELECT v.*, d.name AS dataset FROM dataset_versions v JOIN datasets d "
        "ON d.id = v.dataset_id ORDER BY v.created_at DESC, v.id DESC"
    )
    return [_version(row) for row in rows]
