"""Deterministic train / validation / test splits.

Examples are ordered by a hash of (seed, content) and cut at the requested ratios, so the
same examples and seed always give the same split, and exact copies land side by side
(a duplicate can't sit in train while its twin is in test). Rejected examples get no split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlite_utils

from ftapp.errors import ValidationError
from ftapp.records import Split
from ftapp.store import datasets as store
from ftapp.store.db import write_transaction


def parse_ratios(ratios: Sequence[float | str]) -> tuple[float, float, float]:
    """Ratios as fractions summing to 1; any non-negative triple (80/10/10) is scaled; numbers
    or their text ("0.8", from a command line)."""
    if len(ratios) != 3:
        raise ValidationError(f"give three ratios (train, validation, test), got {len(ratios)}")
    try:
        values = [float(r) for r in ratios]
    except (TypeError, ValueError):
        raise ValidationError(f"ratios must be numbers, got {list(ratios)}") from None
    if any(v < 0 for v in values) or sum(values) <= 0:
        raise ValidationError(f"ratios must be non-negative and not all zero, got {values}")
    if values[0] == 0:
        raise ValidationError("the train ratio must be above zero")
    total = sum(values)
    return (values[0] / total, values[1] / total, values[2] / total)


def split_counts(n: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    n_validation = round(n * ratios[1])
    n_test = round(n * ratios[2])
    return n - n_validation - n_test, n_validation, n_test


def assign_splits(
    db: sqlite_utils.Database,
    dataset: str,
    ratios: Sequence[float | str] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, int]:
    """Give every non-rejected example of the dataset a split. Returns the count per split."""
    fractions = parse_ratios(ratios)
    with write_transaction(db):
        target = store.get_dataset(db, dataset)
        rows = store.split_candidates(db, target.id)
        rows.sort(key=lambda row: (_order_key(seed, row[1]), row[0]))
        n_train, n_validation, _ = split_counts(len(rows), fractions)
        assignment = {}
        for position, (example_id, _) in enumerate(rows):
            if position < n_train:
                assignment[example_id] = Split.TRAIN
            elif position < n_train + n_validation:
                assignment[example_id] = Split.VALIDATION
            else:
                assignment[example_id] = Split.TEST
        store.set_splits(
            db, target.id, {example_id: split.value for example_id, split in assignment.items()}
        )
        store.set_split_config(db, target.id, fractions, seed)
    counts = {split.value: 0 for split in Split}
    for split in assignment.values():
        counts[split.value] += 1
    return counts


def _order_key(seed: int, digest: str) -> str:
    return hashlib.sha256(f"{seed}:{digest}".encode()).hexdigest()
