"""Importing a file into a dataset: read, detect the format, validate every row, count tokens,
drop exact duplicates, and write the valid rows in one transaction.

With on_error="skip" the valid rows are written and the rejected ones listed in the report
(and stored with the import, so they can be downloaded later); with "abort" any bad row
means nothing is written. Either way the write is all-or-nothing.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from ftapp.data.formats import RowError, content_hash, detect_format, normalize, split_prompt
from ftapp.data.readers import SourceRow, file_type_of, location_word, read_rows
from ftapp.errors import NotFound, ValidationError
from ftapp.records import (
    DatasetKind,
    ImportReport,
    OnError,
    RowProblem,
    SourceFormat,
    parse_choice,
)
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


@dataclass
class _Findings:
    """What the phases of an import found wrong, in the order they found it."""

    where: str  # "line" or "row": how a location is named for this file type
    problems: list[RowProblem] = field(default_factory=list)
    duplicates: list[RowProblem] = field(default_factory=list)

    def problem(self, row: SourceRow, reason: str) -> None:
        self.problems.append(RowProblem(f"{self.where} {row.line}", row.line, reason, row.raw))

    def duplicate(self, row: SourceRow, reason: str) -> None:
        self.duplicates.append(RowProblem(f"{self.where} {row.line}", row.line, reason, row.raw))


@contextmanager
def _collection_paused() -> Iterator[None]:
    """Python's automatic garbage collection off inside, back on after unless it was off
    before: process-wide, so of two imports at once, the one that turned it off turns it on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# An import makes a few objects per row and no reference cycles, yet the objects it keeps
# trigger full collections, each going through every object of the process: one took 0.6 s
# of a 9 s import of 20,000 rows (with transformers loaded, 445,000 objects), and they still
# took 0.3 s after a gc.freeze() like the app's.
@_collection_paused()
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
    _check_file(path, file_name, max_bytes, max_tokens)
    file_type = file_type_of(file_name)
    found = _Findings(location_word(file_type))

    progress(0.0, f"reading {file_name}")
    rows = read_rows(path, file_type, column_map)
    if not rows:
        raise ValidationError(f"{file_name}: the file has no rows")
    source_format = _resolve_format(fmt, rows, file_name, found.where)

    progress(0.2, f"validating {len(rows)} rows")
    unique = _valid_unique_rows(rows, source_format, max_tokens, found)
    progress(0.4, "counting tokens")
    candidates = _rows_that_fit(unique, count_tokens, max_tokens, source_format, found, progress)
    found.problems.sort(key=lambda problem: problem.line)

    def rejected(message: str) -> ImportRejected:
        duplicates = sorted(found.duplicates, key=lambda d: d.line)
        report = ImportReport(dataset, file_name, file_type, source_format, len(rows), 0,
                              found.problems, duplicates)  # fmt: skip
        return ImportRejected(f"{file_name}: {message}", report)

    if found.problems and on_error == OnError.ABORT:
        raise rejected(
            f"{len(found.problems)} of {len(rows)} rows are invalid, nothing was imported. "
            + _first_problems(found.problems)
        )
    if not candidates:
        raise rejected("no row could be imported. " + _first_problems(found.problems))

    progress(0.8, f"writing {len(candidates)} examples")
    import_row = {
        "file_name": file_name,
        "file_type": file_type,
        "source_format": str(source_format),
        "on_error": str(on_error),
        "n_rows": len(rows),
        "created_by": user,
    }
    import_id, n_imported = _write(db, dataset, candidates, import_row, found, user, rejected)
    progress(1.0, "done")
    return ImportReport(
        dataset=dataset,
        file_name=file_name,
        file_type=file_type,
        source_format=source_format,
        n_rows=len(rows),
        n_imported=n_imported,
        problems=found.problems,
        duplicates=found.duplicates,
        import_id=import_id,
    )


def _check_file(path: Path, file_name: str, max_bytes: int | None, max_tokens: int) -> None:
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


def _valid_unique_rows(
    rows: list[SourceRow], source_format: SourceFormat, max_tokens: int, found: _Findings
) -> list[tuple[SourceRow, Any, str]]:
    """The rows that normalize, once each (row, normalized, content hash): copies are dropped
    before counting tokens, so re-importing a file costs no tokenization, and so are rows too
    long in characters to fit in `max_tokens`."""
    seen: dict[str, int] = {}
    unique: list[tuple[SourceRow, Any, str]] = []
    for row in rows:
        if row.error:
            found.problem(row, row.error)
            continue
        try:
            normalized = normalize(row.value, source_format)
        except RowError as exc:
            found.problem(row, str(exc))
            continue
        digest = content_hash(
            normalized.messages, normalized.tools, normalized.rejected, normalized.label
        )
        if digest in seen:
            found.duplicate(row, f"exact duplicate of {found.where} {seen[digest]}")
            continue
        seen[digest] = row.line
        chars = max(map(_chars, _sequences(normalized)))
        if chars > max_tokens * MAX_CHARS_PER_TOKEN:
            found.problem(row, f"longer than the max length: {chars:,} characters can't fit in "
                               f"{max_tokens} tokens")  # fmt: skip
            continue
        unique.append((row, normalized, digest))
    return unique


def _rows_that_fit(
    unique: list[tuple[SourceRow, Any, str]],
    count_tokens: TokenCounter,
    max_tokens: int,
    source_format: SourceFormat,
    found: _Findings,
    progress: Progress,
) -> list[tuple[SourceRow, dict[str, Any]]]:
    """Count tokens in bounded batches; the rows within `max_tokens`, as example rows. A pair
    counts as its longer side: the prompt with the chosen or with the rejected answer."""
    token_counts: list[int] = []
    for batch in _token_batches(unique):
        sequences = [_sequences(normalized) for _, normalized, _ in batch]
        counts = iter(count_tokens([s for pair in sequences for s in pair]))
        token_counts += [max(next(counts) for _ in pair) for pair in sequences]
        progress(0.4 + 0.4 * len(token_counts) / len(unique), "counting tokens")
    candidates: list[tuple[SourceRow, dict[str, Any]]] = []
    for (row, normalized, digest), n_tokens in zip(unique, token_counts, strict=True):
        if n_tokens > max_tokens:
            found.problem(row, f"longer than the max length: {n_tokens} tokens > {max_tokens}")
            continue
        candidates.append((row, _example_row(row, normalized, digest, n_tokens, source_format)))
    return candidates


def _write(
    db: sqlite_utils.Database,
    dataset: str,
    candidates: list[tuple[SourceRow, dict[str, Any]]],
    import_row: dict[str, Any],
    found: _Findings,
    user: str,
    rejected: Callable[[str], ImportRejected],
) -> tuple[int, int]:
    """Write the import and its new examples in one transaction; returns (import id, how many
    examples). Rows already in the dataset are duplicates; if nothing is new, `rejected`."""
    with write_transaction(db):
        source_format = SourceFormat(import_row["source_format"])
        kind = DatasetKind.PREFERENCE if source_format.is_preference else DatasetKind.SFT
        target = store.find_dataset(db, dataset) or store.create_dataset(db, dataset, user, kind)
        if target.kind != kind:
            raise ValidationError(
                f"{import_row['file_name']}: dataset {dataset!r} holds {_KIND_WORDS[target.kind]}"
                f"; this file holds {_KIND_WORDS[kind]} ({source_format}): import it into a "
                "dataset of its own"
            )
        # Read inside the transaction, so a concurrent import can't slip the same row in.
        known = store.content_hashes(db, target.id)
        to_insert = []
        for row, example in candidates:
            if example["content_hash"] in known:
                first = known[example["content_hash"]]
                found.duplicate(row, f"exact duplicate of example #{first} already in the dataset")
            else:
                to_insert.append(example)
        found.duplicates.sort(key=lambda problem: problem.line)
        if not to_insert:
            reason = (
                _first_problems(found.problems) or "every row is a duplicate of one already there."
            )
            raise rejected(f"no row could be imported. {reason}")
        import_id = (
            db["imports"]
            .insert(
                {
                    **import_row,
                    "dataset_id": target.id,
                    "n_imported": len(to_insert),
                    "n_rejected": len(found.problems),
                    "n_duplicates": len(found.duplicates),
                    "problems_json": _problems_json(found.problems),
                    "duplicates_json": _problems_json(found.duplicates),
                    "created_at": utc_now(),
                }
            )
            .last_pk
        )
        now = utc_now()
        for example in to_insert:
            example.update(dataset_id=target.id, import_id=import_id, created_at=now)
        store.insert_examples(db, to_insert)
    return import_id, len(to_insert)


def import_problems(db: sqlite_utils.Database, import_id: int) -> list[RowProblem]:
    """The rejected rows of a past import, as stored with it."""
    row = store.find_import(db, import_id)
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


_KIND_WORDS = {DatasetKind.SFT: "conversations (SFT)", DatasetKind.PREFERENCE: "preference data"}


def _sequences(normalized: Any) -> list[list[dict[str, str]]]:
    """What the trainer reads of an example: its conversation; a pair's rejected side too."""
    if normalized.rejected is None:
        return [normalized.messages]
    prompt, _ = split_prompt(normalized.messages)
    return [normalized.messages, prompt + normalized.rejected]


def _chars(messages: list[dict[str, str]]) -> int:
    return sum(len(message["content"]) for message in messages)


def _token_batches(rows: list[tuple[SourceRow, Any, str]]) -> Iterator[list]:
    """The rows in batches of at most TOKEN_BATCH rows and TOKEN_BATCH_CHARS characters
    (a longer row is a batch of its own)."""
    batch: list = []
    chars = 0
    for row in rows:
        size = sum(map(_chars, _sequences(row[1])))
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
    rejected = normalized.rejected
    battle_id = row.value.get("battle_id") if isinstance(row.value, dict) else None
    return {
        "rejected_json": json.dumps(rejected, ensure_ascii=False) if rejected else None,
        # A pair made from Arena votes names its battle (arena/preferences.py writes it).
        "battle_id": battle_id if source_format.is_preference and type(battle_id) is int else None,
        "label": None if normalized.label is None else int(normalized.label),
        "source_line": row.line,
        "source_format": str(source_format),
        "messages_json": messages_json,
        "raw_json": row.as_read_json or json.dumps(row.as_read, ensure_ascii=False, default=str),
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
