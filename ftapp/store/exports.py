"""Table `exports`: every merged model folder and Hugging Face Hub push made from a model
variant, so the variant links to where its copies went (a folder on this machine, a Hub repo).

Rows are written once an export has fully succeeded; a failed merge or push leaves none.
"""

from __future__ import annotations

from typing import Any, Literal

import sqlite_utils

from ftapp.errors import ValidationError
from ftapp.timeutil import utc_now

ExportKind = Literal["merged", "hub_adapter", "hub_merged"]
KINDS: tuple[str, ...] = ("merged", "hub_adapter", "hub_merged")


def record_export(
    db: sqlite_utils.Database,
    model: str,
    kind: ExportKind,
    target: str,
    url: str | None,
    user: str,
) -> int:
    """Note that `model` was exported: `target` is the folder or the Hub repo id, `url` the
    repo's page (None for a folder). Returns the new row's id."""
    if kind not in KINDS:
        raise ValidationError(f"export kind must be one of {', '.join(KINDS)}; got {kind!r}")
    row = {"model": model, "kind": kind, "target": target, "url": url,
           "created_at": utc_now(), "created_by": user}  # fmt: skip
    return db["exports"].insert(row).last_pk


def exports_of(db: sqlite_utils.Database, model: str) -> list[dict[str, Any]]:
    """The exports of one model variant, newest first."""
    return list(
        db.query("SELECT * FROM exports WHERE model = ? ORDER BY created_at DESC, id DESC", [model])
    )
