"""What the review screen reads: one page of a dataset's examples matching the filters, the
example shown with its history, and the dataset's statistics (changes are in data/review.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlite_utils

from ftapp.data.stats import dataset_stats
from ftapp.records import Example
from ftapp.store import datasets as store


@dataclass(frozen=True)
class ReviewPage:
    """What the review screen shows: one page of the examples matching the filters, and the
    example at position `at` of them (clamped to the matches) with its history."""

    stats: dict[str, Any]  # data/stats.dataset_stats of the whole dataset
    total: int  # examples matching the filters
    at: int
    page_start: int
    examples: list[Example]
    current: Example | None
    events: list[dict[str, Any]]  # the current example's history, oldest first


def review_page(
    db: sqlite_utils.Database,
    dataset: str,
    at: int,
    page_size: int,
    *,
    status: str | None = None,
    split: str | None = None,
    tag: str | None = None,
    search: str | None = None,
) -> ReviewPage:
    target = store.get_dataset(db, dataset)
    filters = {"status": status, "split": split, "tag": tag, "search": search}
    stats = dataset_stats(db, dataset)
    _, total = store.query_examples(db, target.id, limit=0, **filters)
    at = max(0, min(at, total - 1))
    page_start = (at // page_size) * page_size
    page, _ = store.query_examples(db, target.id, offset=page_start, limit=page_size, **filters)
    current = page[at - page_start] if page else None
    events = store.example_events(db, current.id) if current else []
    return ReviewPage(stats, total, at, page_start, page, current, events)
