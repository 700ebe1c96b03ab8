"""The prompts of an evaluation session: a frozen dataset version's test split, or an uploaded
file. Each prompt is a conversation ending with a user turn; when the source has the answer
that followed, it is kept as the reference.

An uploaded file may hold plain prompts ({"prompt": "..."}, optionally "reference") or rows
in any format the Data tab imports (the conversation is cut before its last answer). One bad
row rejects the file, with its line number: a session never starts on part of a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from ftapp.data.formats import RowError, detect_format, normalize
from ftapp.data.readers import file_type_of, location_word, read_rows
from ftapp.data.versions import resolve_version
from ftapp.errors import ValidationError
from ftapp.records import SourceFormat
from ftapp.store import versions as version_store
from ftapp.text import plural

MAX_PROMPTS = 5_000
MAX_PROMPT_CHARS = 50_000


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]  # ends with the user turn to answer
    reference: str | None = None  # the answer the source had, if any


def prompts_from_version(
    db: sqlite_utils.Database, reference: str, split: str = "test"
) -> tuple[list[Prompt], str]:
    """The prompts of one split of a frozen version ('NAME@v3'), and a label for the source."""
    version = resolve_version(db, reference)
    rows = list(version_store.version_rows(db, version.id, split))
    if not rows:
        raise ValidationError(
            f"{version.label} has no examples in its {split} split; split the dataset before "
            "freezing it, or upload a prompt file"
        )
    prompts = [cut_before_last_answer(row["messages"]) for row in rows]
    return _checked(prompts, f"{version.label}"), f"{version.label} ({split} split)"


def prompts_from_file(path: Path | str, file_name: str | None = None) -> tuple[list[Prompt], str]:
    """The prompts of an uploaded JSONL, JSON, CSV or Parquet file, and a label for it."""
    path = Path(path)
    file_name = Path(file_name or path.name).name
    file_type = file_type_of(file_name)
    rows = read_rows(path, file_type)
    if not rows:
        raise ValidationError(f"{file_name}: the file has no rows")
    where = location_word(file_type)
    prompts = []
    for row in rows:
        try:
            if row.error:
                raise RowError(row.error)
            prompts.append(_prompt_of_row(row.value))
        except RowError as exc:
            raise ValidationError(f"{file_name} {where} {row.line}: {exc}") from None
    return _checked(prompts, file_name), f"uploaded {file_name}"


def load_prompts(
    db: sqlite_utils.Database,
    version: str | None = None,
    split: str = "test",
    prompt_file: Path | str | None = None,
) -> tuple[list[Prompt], str]:
    """The prompts a session or an evaluation run is created with: an uploaded file if one is
    given, else one split of a frozen version. Returns (prompts, source label)."""
    if prompt_file:
        return prompts_from_file(Path(prompt_file), Path(prompt_file).name)
    if not version:
        raise ValidationError("choose a dataset version")
    return prompts_from_version(db, version, split)


def cut_before_last_answer(messages: list[dict[str, str]]) -> Prompt:
    """The conversation up to its last user turn, and the answer after it as the reference."""
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None:
        raise RowError("the conversation has no user turn to answer")
    after = messages[last_user + 1 :]
    reference = next((m["content"] for m in after if m["role"] == "assistant"), None)
    return Prompt([dict(m) for m in messages[: last_user + 1]], reference)


def _prompt_of_row(value: Any) -> Prompt:
    if isinstance(value, dict) and "prompt" in value and detect_format(value) is None:
        prompt = value["prompt"]
        reference = value.get("reference", value.get("answer"))
        if reference is not None and not isinstance(reference, str):
            raise RowError("field 'reference' must be text")
        if isinstance(prompt, str):
            if not prompt.strip():
                raise RowError("field 'prompt' is empty")
            return Prompt([{"role": "user", "content": prompt}], reference)
        # A conversation as the prompt: reuse the importer's checks with a placeholder answer.
        normalized = normalize(
            {"prompt": prompt, "completion": "."}, SourceFormat.PROMPT_COMPLETION
        )
        return Prompt(cut_before_last_answer(normalized.messages).messages, reference)
    fmt = detect_format(value)
    if fmt is None:
        raise RowError(
            'expected {"prompt": ...} or a row of a format the Data tab imports (messages, '
            "prompt/completion, Alpaca, ShareGPT, preference)"
        )
    return cut_before_last_answer(normalize(value, fmt).messages)


def _checked(prompts: list[Prompt], source: str) -> list[Prompt]:
    if len(prompts) > MAX_PROMPTS:
        raise ValidationError(
            f"{source}: {plural(len(prompts), 'prompt')}; a session takes at most {MAX_PROMPTS:,}"
        )
    for number, prompt in enumerate(prompts, 1):
        size = sum(len(m["content"]) for m in prompt.messages)
        if size > MAX_PROMPT_CHARS:
            raise ValidationError(
                f"{source}: prompt {number} is {size:,} characters; the limit is "
                f"{MAX_PROMPT_CHARS:,}"
            )
    return prompts
