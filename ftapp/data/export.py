"""Exporting a dataset (its accepted examples now, or a frozen version) as JSONL for training.

Formats follow TRL's dataset formats:
- messages: {"messages": [...]} (plus "tools" where the example has them)
- prompt_completion: {"prompt": "...", "completion": "..."} when every example is a single
  user turn and one answer; otherwise TRL's conversational form, where prompt is the list of
  messages before the last answer and completion is [that answer]. One file never mixes both.
- preference (a preference dataset's pairs): {"prompt": [...], "chosen": [...], "rejected":
  [...]}, TRL's conversational preference format, for DPO and ORPO
- kto (a preference dataset, unpaired): {"prompt": [...], "completion": [...], "label": bool};
  a pair gives two rows, its chosen answer good and its rejected one bad
The file is written next to its destination and renamed into place: no partial files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlite_utils

from ftapp.data.formats import split_prompt
from ftapp.errors import ValidationError
from ftapp.files import atomic_write
from ftapp.records import DatasetKind, Split, parse_choice
from ftapp.store import datasets as store
from ftapp.store import versions as version_store

EXPORT_FORMATS = ("messages", "prompt_completion", "preference", "kto")
PREFERENCE_EXPORTS = ("preference", "kto")


def export_dataset(
    db: sqlite_utils.Database,
    dataset: str,
    out: Path | str,
    *,
    fmt: str = "messages",
    version: str | int | None = None,
    split: str | None = None,
) -> int:
    """Write the examples to `out` (.jsonl). Returns the number of rows written."""
    out = Path(out)
    if fmt not in EXPORT_FORMATS:
        raise ValidationError(f"export format must be one of {', '.join(EXPORT_FORMATS)}")
    if out.suffix.lower() != ".jsonl":
        raise ValidationError(f"{out.name}: exports are JSONL files; name it *.jsonl")
    if split:
        split = parse_choice(Split, split, "split").value
    rows = list(_rows(db, dataset, version, split))
    if not rows:
        numbered = version not in (None, "")
        what = f"rows in v{version_store.parse_version_number(version)}" if numbered else (
            "accepted examples")  # fmt: skip
        where = f" in the {split} split" if split else ""
        raise ValidationError(f"{dataset}: nothing to export, no {what}{where}")
    is_preference = store.get_dataset(db, dataset).kind == DatasetKind.PREFERENCE
    if (fmt in PREFERENCE_EXPORTS) != is_preference and fmt != "messages":
        kinds = "a preference dataset" if fmt in PREFERENCE_EXPORTS else "an SFT dataset"
        raise ValidationError(f"{dataset}: the {fmt} format exports {kinds}")
    if fmt == "prompt_completion":
        simple = all(_is_single_turn(row["messages"]) for row in rows)
        records = [_prompt_completion(row, simple) for row in rows]
    elif fmt == "preference":
        records = [pair_record(row) for row in rows if row["rejected"] is not None]
        if not records:
            raise ValidationError(f"{dataset}: no pairs to export (try the kto format)")
    elif fmt == "kto":
        records = [record for row in rows for record in unpaired_records(row)]
    else:
        records = [_messages(row) for row in rows]
    with atomic_write(out) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(records)


def _rows(db: sqlite_utils.Database, dataset: str, version: str | int | None, split: str | None):
    target = store.get_dataset(db, dataset)
    if version not in (None, ""):
        number = version_store.parse_version_number(version)
        frozen = version_store.get_version(db, target.id, number)
        yield from version_store.version_rows(db, frozen.id, split)
        return
    yield from store.accepted_examples(db, target.id, split)


def _messages(row: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"messages": row["messages"]}
    if row["tools"]:
        record["tools"] = row["tools"]
    return record


def pair_record(row: dict[str, Any]) -> dict[str, Any]:
    """A pair in TRL's explicit-prompt preference format (what DPO and ORPO train on)."""
    prompt, chosen = split_prompt(row["messages"])
    record = {"prompt": prompt, "chosen": chosen, "rejected": row["rejected"]}
    return record | ({"tools": row["tools"]} if row["tools"] else {})


def unpaired_records(row: dict[str, Any]) -> list[dict[str, Any]]:
    """TRL's unpaired format (what KTO trains on): a labelled answer gives one row, a pair
    two (its chosen answer good, its rejected one bad)."""
    prompt, answer = split_prompt(row["messages"])
    extra = {"tools": row["tools"]} if row["tools"] else {}
    if row["rejected"] is None:
        return [{"prompt": prompt, "completion": answer, "label": bool(row["label"]), **extra}]
    return [
        {"prompt": prompt, "completion": answer, "label": True, **extra},
        {"prompt": prompt, "completion": row["rejected"], "label": False, **extra},
    ]


def _is_single_turn(messages: list[dict[str, str]]) -> bool:
    return [m["role"] for m in messages] == ["user", "assistant"]


def _prompt_completion(row: dict[str, Any], simple: bool) -> dict[str, Any]:
    messages = row["messages"]
    if simple:
        record: dict[str, Any] = {
            "prompt": messages[0]["content"],
            "completion": messages[1]["content"],
        }
    else:
        record = {"prompt": messages[:-1], "completion": messages[-1:]}
    if row["tools"]:
        record["tools"] = row["tools"]
    return record
