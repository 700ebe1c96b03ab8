"""Writing files users take away: whole or not at all, and safe to open in a spreadsheet."""

from __future__ import annotations

import os
from collections.abc import Iterator
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
