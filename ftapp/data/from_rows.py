"""A new dataset, made in one step from rows the app itself produced (the Arena's votes,
production feedback): written as files and imported through the normal importer (so every row
is checked like an uploaded one, and the dataset's import history names where its rows came
from), described, accepted, split and frozen as v1. It all lands or nothing does: when a step
fails the new dataset is deleted.

The rows are in any format the importer reads (e.g. TRL's preference or unpaired KTO rows);
a field the format doesn't use (a `request_id`, say) is kept with the row as read
(`Example.raw`), which is how such rows link back to what they came from.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from ftapp.data.importer import TokenCounter, import_file
from ftapp.data.review import set_status_where
from ftapp.data.splits import assign_splits, parse_ratios
from ftapp.data.versions import freeze_version
from ftapp.errors import Conflict, ValidationError
from ftapp.files import write_records
from ftapp.records import DatasetVersion
from ftapp.store import datasets as dataset_store


def dataset_from_rows(
    db: sqlite_utils.Database,
    name: str,
    files: dict[str, list[dict[str, Any]]],
    *,
    description: str,
    user: str,
    count_tokens: TokenCounter,
    max_tokens: int,
    ratios: Sequence[float | str] = (0.8, 0.1, 0.1),
    seed: int = 0,
    note: str = "",
) -> DatasetVersion:
    """A new dataset `name` from `files` (file name, e.g. "arena-pairs.jsonl": its rows; a
    file without rows is skipped), its rows accepted and split by `ratios`, frozen as v1 with
    `note`. Refused before anything is written when the name is taken, the ratios are wrong or
    there is no row; nothing is left behind when a later step fails."""
    name = dataset_store.check_dataset_name(name)
    if dataset_store.find_dataset(db, name):
        raise Conflict(f"a dataset named {name!r} exists; these rows go into a new dataset")
    parse_ratios(ratios)  # refused here rather than after the import
    if not any(files.values()):
        raise ValidationError(f"no row to write into {name!r}")
    try:
        with tempfile.TemporaryDirectory(prefix="ftapp-rows-") as folder:
            for file_name, rows in files.items():
                if rows:
                    path = Path(folder) / file_name
                    write_records(path, rows, "jsonl", [])
                    import_file(db, path, name, count_tokens=count_tokens,
                                max_tokens=max_tokens, user=user)  # fmt: skip
        dataset_store.set_description(db, name, description)
        set_status_where(db, name, "accepted", user)
        assign_splits(db, name, ratios, seed)
        version, _ = freeze_version(db, name, user, note=note)
    except Exception:
        if dataset_store.find_dataset(db, name):
            dataset_store.delete_dataset(db, name)
        raise
    return version
