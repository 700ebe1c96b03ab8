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
