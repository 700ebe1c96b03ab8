"""Importing a file into a dataset: read, detect the format, validate every row, count tokens,
drop exact duplicates, and write the valid rows in one transaction.

With on_error="skip" the valid rows are written and the rejected ones listed in the report
(and stored with the import, so they can be downloaded later); with "abort" any bad row
means nothing is written. Either way the write is all-or-nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

from ftapp.data.formats import RowError, content_hash, detect_format, normalize
from ftapp.data.readers import SourceRow, file_type_of, location_word, read_rows
from ftapp.errors import NotFound, ValidationError
from ftapp.records import ImportReport, OnError, RowProblem, SourceFormat, parse_choice
from ftapp.store import datasets as store
from ftapp.store.db import write_transaction
from ftapp.timeutil import utc_now

Progress = Callable[[float, str], None]
TokenCounter = Callable[[list[list[dict[str, str]]]], list[int]]
TOKEN_BATCH = 2000
# Tokenizing holds a few hundred bytes per character (5 MB of text took 1.2 GB): a batch
# stops at this many characters, so memory stays bounded whatever the rows' lengths.
TOKEN_BATCH_CHARS = 1_000_000
# No tokenizer has tokens this long (SmolLM2's longest is 81 characters): a row with more
# characters than this per allowed token can't fit and is refused without tokenizing it.
MAX_CHARS_PER_TOKEN = 256
PROBLEMS_IN_MESSAGE = 5


class ImportRejected(ValidationError):
    """An import that wrote nothing; `report` lists every problem found."""

    def __init__(self, message: str, report: ImportReport):
        super().__init__(message)
        self.report = report


def import_file(
    db: sqlite_utils.Database,
    path: Path | str,
    dataset: str,
    *,
    count_tokens: TokenCounter,
    max_tokens: int,
    fmt: str = "auto",
    on_error: str = "skip",
    column_map: dict[str, str] | None = None,
    file_name: str | None = None,
    max_bytes: int | None = None,
    user: str = "admin",
    progress: Progress | None = None,
) -> ImportReport:
    """Import one file into `dataset` (created if new). See the module docstring."""
    path = Path(path)
    file_name = Path(file_name or path.name).name
    progress = progress or (lambda fraction, message: None)
    dataset = store.check_dataset_name(dataset)
    on_error = parse_choice(OnError, on_error, "on_error")
    if not path.is_file():
        raise ValidationError(f"{file_name}: file not found")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise ValidationError(
            f"{file_name}: {size / 1e6:.1f} MB is over the upload limit of {max_bytes / 1e6:.1f} MB"
            " (FTAPP_MAX_UPLOAD_MB)"
        )
    if max_tokens < 1:
        raise ValidationError(f"max tokens must be at least 1, got {max_tokens}")
    file_type = file_type_of(file_name)
    where = location_word(file_type)

    progress(0.0, f"reading {file_name}")
    rows = read_rows(path, file_type, column_map)
    if not rows:
        raise ValidationError(f"{file_name}: the file has no rows")
    source_format = _resolve_format(fmt, rows, file_name, where)

    progress(0.2, f"validating {len(rows)} rows")
    problems: list[RowProblem] = []
    valid: list[tuple[SourceRow, Any]] = []
    for row in rows:
        if row.error:
            problems.append(RowProblem(f"{where} {row.line}", row.line, row.error, row.raw))
            continue
        try:
            valid.append((row, normalize(row.value, source_format)))
        except RowError as exc:
            problems.append(RowProblem(f"{where} {row.line}", row.line, str(exc), row.raw))

    # Drop copies before counting tokens: re-importing a file then costs no tokenization.
    seen: dict[str, int] = {}
    duplicates: list[RowProblem] = []
    unique: list[tuple[SourceRow, Any, str]] = []
    for row, normalized in valid:
        digest = content_hash(normalized.messages, normalized.tools)
        if digest in seen:
            reason = f"exact duplicate of {where} {seen[digest]}"
            duplicates.append(RowProblem(f"{where} {row.line}", row.line, reason, row.raw))
            continue
        seen[digest] = row.line
        chars = _chars(normalized.messages)
        if chars > max_tokens * MAX_CHARS_PER_TOKEN:
            reason = (f"longer than the max length: {chars:,} characters can't fit in "
                      f"{max_tokens} tokens")  # fmt: skip
            problems.append(RowProblem(f"{where} {row.line}", row.line, reason, row.raw))
            continue
        unique.append((row, normalized, digest))

    progress(0.4, "counting tokens")
    token_counts: list[int] = []
    for batch in _token_batches(unique):
        token_counts += count_tokens([normalized.messages for _, normalized, _ in batch])
        progress(0.4 + 0.4 * len(token_counts) / len(unique), "counting tokens")

    candidates: list[tuple[SourceRow, dict[str, Any]]] = []
    for (row, normalized, digest), n_tokens in zip(unique, token_counts, strict=True):
        if n_tokens > max_tokens:
            reason = f"longer than the max length: {n_tokens} tokens > {max_tokens}"
            problems.append(RowProblem(f"{where} {row.line}", row.line, reason, row.raw))
            continue
        candidates.append((row, _example_row(row, normalized, digest, n_tokens, source_format)))
    problems.sort(key=lambda problem: problem.line)

    def rejected(message: str) -> ImportRejected:
        report = ImportReport(dataset, file_name, file_type, source_format, len(rows), 0,
                              problems, sorted(duplicates, key=lambda d: d.line))  # fmt: skip
        return ImportRejected(f"{file_name}: {message}", report)

    if problems and on_error == OnError.ABORT:
        raise rejected(
            f"{len(problems)} of {len(rows)} rows are invalid, nothing was imported. "
            + _first_problems(problems)
        )
    if not candidates:
        raise rejected("no row could be imported. " + _first_problems(problems))

    progress(0.8, f"writing {len(candidates)} examples")
    with write_transaction(db):
        target = store.find_dataset(db, dataset) or store.create_dataset(db, dataset, user)
        # Read inside the transaction, so a concurrent import can't slip the same row in.
        known = store.content_hashes(db, target.id)
        to_insert = []
        for row, example in candidates:
            if example["content_hash"] in known:
                reason = f"exact duplicate of example #{known[example['content_hash']]} already"
                reason += " in the dataset"
                duplicates.append(RowProblem(f"{where} {row.line}", row.line, reason, row.raw))
            else:
                to_insert.append(example)
        duplicates.sort(key=lambda problem: problem.line)
        if not to_insert:
            reason = _first_problems(problems) or "every row is a duplicate of one already there."
            raise rejected(f"no row could be imported. {reason}")
        import_id = (
            db["imports"]
            .insert(
                {
                    "dataset_id": target.id,
                    "file_name": file_name,
                    "file_type": file_type,
                    "source_format": str(source_format),
                    "on_error": str(on_error),
                    "n_rows": len(rows),
                    "n_imported": len(to_insert),
                    "n_rejected": len(problems),
                    "n_duplicates": len(duplicates),
                    "problems_json": _problems_json(problems),
                    "duplicates_json": _problems_json(duplicates),
                    "created_at": utc_now(),
                    "created_by": user,
                }
            )
            .last_pk
        )
        now = utc_now()
        for example in to_insert:
            example.update(dataset_id=target.id, import_id=import_id, created_at=now)
        db["examples"].insert_all(to_insert, batch_size=1000)
    progress(1.0, "done")
    return ImportReport(
        dataset=dataset,
        file_name=file_name,
        file_type=file_type,
        source_format=source_format,
        n_rows=len(rows),
        n_imported=len(to_insert),
        problems=problems,
        duplicates=duplicates,
        import_id=import_id,
    )


def import_problems(db: sqlite_utils.Database, import_id: int) -> list[RowProblem]:
    """The rejected rows of a past import, as stored with it."""
    row = next(db.query("SELECT problems_json FROM imports WHERE id = ?", [import_id]), None)
    if row is None:
        raise NotFound(f"no import #{import_id}")
    return [RowProblem(**problem) for problem in json.loads(row["problems_json"])]


def write_problems_jsonl(problems: list[RowProblem], out: Path) -> Path:
    """The rejected rows as JSONL (location, reason, raw text) for download."""
    with out.open("w", encoding="utf-8") as handle:
        for problem in problems:
            handle.write(json.dumps(problem.__dict__, ensure_ascii=False) + "\n")
    return out


def _resolve_format(fmt: str, rows: list[SourceRow], file_name: str, where: str) -> SourceFormat:
    if fmt and fmt != "auto":
        return parse_choice(SourceFormat, fmt, "format")
    if all(row.error for row in rows):  # say why each row failed, not "can't tell the format"
        problems = [RowProblem(f"{where} {row.line}", row.line, row.error or "") for row in rows]
        raise ValidationError(f"{file_name}: no row could be read. {_first_problems(problems)}")
    for row in rows:
        if isinstance(row.value, dict):
            detected = detect_format(row.value)
            if detected:
                return detected
    first = next((row for row in rows if isinstance(row.value, dict)), None)
    keys = ", ".join(first.value) if first else "no JSON objects"
    raise ValidationError(
        f"{file_name}: can't tell the format from the fields ({keys}); expected messages, "
        "prompt + completion, instruction + output (Alpaca), conversations (ShareGPT), or "
        "chosen + rejected. For CSV, map the columns."
    )


def _chars(messages: list[dict[str, str]]) -> int:
    return sum(len(message["content"]) for message in messages)


def _token_batches(rows: list[tuple[SourceRow, Any, str]]) -> Iterator[list]:
    """The rows in batches of at most TOKEN_BATCH rows and TOKEN_BATCH_CHARS characters
    (a longer row is a batch of its own)."""
    batch: list = []
    chars = 0
    for row in rows:
        size = _chars(row[1].messages)
        if batch and (len(batch) == TOKEN_BATCH or chars + size > TOKEN_BATCH_CHARS):
            yield batch
            batch, chars = [], 0
        batch.append(row)
        chars += size
    if batch:
        yield batch


def _example_row(
    row: SourceRow, normalized: Any, digest: str, n_tokens: int, source_format: SourceFormat
) -> dict[str, Any]:
    messages_json = json.dumps(normalized.messages, ensure_ascii=False)
    tools_json = json.dumps(normalized.tools, ensure_ascii=False) if normalized.tools else None
    return {
        "source_line": row.line,
        "source_format": str(source_format),
        "messages_json": messages_json,
        "raw_json": json.dumps(row.as_read, ensure_ascii=False, default=str),
        "tools_json": tools_json,
        "content_hash": digest,
        "n_tokens": n_tokens,
        "status": "pending",
        "tags_json": "[]",
        "note": "",
    }


def _problems_json(problems: list[RowProblem]) -> str:
    return json.dumps([problem.__dict__ for problem in problems], ensure_ascii=False)


def _first_problems(problems: list[RowProblem]) -> str:
    shown = "; ".join(f"{p.location}: {p.reason}" for p in problems[:PROBLEMS_IN_MESSAGE])
    more = len(problems) - PROBLEMS_IN_MESSAGE
    return shown + (f"; and {more} more" if more > 0 else "")
