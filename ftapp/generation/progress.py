"""How far a group of answers (a session's, a run's) has got, and why some failed."""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from ftapp.store import answers as store
from ftapp.store.answers import AnswerTable


@dataclass(frozen=True)
class GenerationProgress:
    total: int
    done: int
    failed: int

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed

    @classmethod
    def from_counts(cls, counts: dict[str, int]) -> GenerationProgress:
        """From a count of answers per status (pending, running, done, failed)."""
        return cls(sum(counts.values()), counts.get("done", 0), counts.get("failed", 0))


def generation_progress(
    db: sqlite_utils.Database, table: AnswerTable, group_id: int
) -> GenerationProgress:
    return GenerationProgress.from_counts(store.answer_counts(db, table, group_id))


def failure_reasons(db: sqlite_utils.Database, table: AnswerTable, group_id: int) -> list[str]:
    """The distinct reasons why answers failed for good, for the admin to read."""
    return store.failure_reasons(db, table, group_id)
