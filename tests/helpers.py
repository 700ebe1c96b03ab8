"""Small builders for test files and counts, shared by the test modules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """One JSON value per line; a str row is written as-is (for malformed lines)."""
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pc(prompt: str, completion: str) -> dict[str, str]:
    return {"prompt": prompt, "completion": completion}


def table_counts(db) -> dict[str, int]:
    """Rows per data table: to prove a failed operation changed nothing."""
    tables = ["datasets", "imports", "examples", "example_events", "dataset_versions",
              "version_examples"]  # fmt: skip
    return {name: db[name].count for name in tables}


def qa_rows(n: int) -> list[dict[str, str]]:
    return [
        {"prompt": f"What is {i} plus {i}?", "completion": f"{i} plus {i} is {2 * i}."}
        for i in range(n)
    ]


def make_version(
    db, folder: Path, count_tokens, name: str = "qa", n: int = 24,
    ratios: tuple[float, float, float] = (0.75, 0.25, 0.0),
    rows: list[dict[str, Any]] | None = None,
) -> str:  # fmt: skip
    """Import `rows` (default: n sums), accept them all, split, freeze; the label "name@vN"."""
    from ftapp.data.importer import import_file
    from ftapp.data.review import set_status_where
    from ftapp.data.splits import assign_splits
    from ftapp.data.versions import freeze_version

    path = write_jsonl(folder / f"{name}.jsonl", qa_rows(n) if rows is None else rows)
    import_file(db, path, name, count_tokens=count_tokens, max_tokens=512)
    set_status_where(db, name, "accepted", "tester")
    assign_splits(db, name, ratios)
    version, _ = freeze_version(db, name, "tester")
    return version.label
