"""Writing files users take away: whole or not at all, and safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

# A cell starting with one of these is run as a formula by Excel, LibreOffice and Sheets
# (`=cmd|' /C calc'!A0`): exports prefix it with a quote so it is shown as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@contextmanager
def atomic_write(out: Path, newline: str | None = None) -> Iterator[IO[str]]:
    """A text handle whose contents replace `out` only when the block ends without error:
    no partial file is ever left at `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        with partial.open("w", encoding="utf-8", newline=newline) as handle:
            yield handle
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text, never runs."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_records(
    out: Path, records: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str]
) -> None:
    """Records as JSONL (one JSON object a line) or CSV (`columns`, lists and dicts as JSON,
    formulas neutralised), written whole or not at all."""
    if fmt == "jsonl":
        with atomic_write(out) as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    with atomic_write(out, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({key: _csv_cell(value) for key, value in record.items()})


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        value = json.dumps(value, ensure_ascii=False)
    return spreadsheet_safe(value)
