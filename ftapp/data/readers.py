"""Reading uploaded files into rows that remember where they came from.

Supported: JSONL (one object a line), JSON (an array of objects), CSV (a header row, with an
optional mapping of columns to fields) and Parquet. A row that can't be parsed becomes a
`SourceRow` with an error and its line number; a file that can't be read at all (binary,
an archive, broken JSON array, bad encoding in a CSV) raises ValidationError naming the line.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftapp.data.formats import surrogate_in_json, unpaired_surrogate
from ftapp.errors import ValidationError

# A long cell is a long example, to be rejected on its own row by the token limit, not a file
# the csv module refuses whole (its default field limit is 128 KiB). Process-wide, set once.
csv.field_size_limit(2**31 - 1)

FILE_TYPES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}
RAW_PREVIEW_CHARS = 300
# CSV cells under these fields may hold JSON (lists of messages, history pairs, tool schemas).
JSON_CELL_FIELDS = {"messages", "conversations", "history", "tools", "prompt", "completion",
                    "chosen", "rejected"}  # fmt: skip
# ... of which these may also hold plain text, so JSON there is kept only when it is messages.
TEXT_CELL_FIELDS = {"prompt", "completion", "chosen", "rejected"}


@dataclass(frozen=True)
class SourceRow:
    line: int  # 1-based line of the file where the row starts (row number for Parquet)
    value: Any = None
    error: str | None = None
    raw: str = ""
    original: Any = None  # the row before a column mapping renamed it; None when unmapped
    # `as_read` as JSON text (the importer's raw_json), made once by the check that the row
    # can be stored rather than again for every imported row; None for a row with an error.
    as_read_json: str | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def as_read(self) -> Any:
        """The row as it was in the file, whatever mapping was applied."""
        return self.value if self.original is None else self.original


def file_type_of(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in FILE_TYPES:
        known = ", ".join(FILE_TYPES)
        raise ValidationError(f"{Path(name).name}: unsupported file type '{suffix}' (use {known})")
    return FILE_TYPES[suffix]


def location_word(file_type: str) -> str:
    return "row" if file_type == "parquet" else "line"


def read_rows(
    path: Path, file_type: str, column_map: dict[str, str] | None = None
) -> list[SourceRow]:
    """All rows of the file, parsed where possible. Raises ValidationError for unreadable files."""
    data = path.read_bytes()
    name = path.name
    if file_type == "parquet":
        rows = _parquet_rows(path, data)
    else:
        _refuse_binary(name, data)
        if file_type == "jsonl":
            rows = _jsonl_rows(data)
        elif file_type == "json":
            rows = _json_rows(name, _decode(name, data))
        else:
            rows = _csv_rows(name, _decode(name, data))
    if column_map:
        rows = _apply_column_map(name, rows, column_map)
    return [_refuse_unstorable(row) for row in rows]


def csv_header(path: Path) -> list[str]:
    """The column names of a CSV file (for the column-mapping form)."""
    data = path.read_bytes()
    _refuse_binary(path.name, data)
    text = _decode(path.name, data)
    header = next(csv.reader(io.StringIO(text, newline="")), [])
    return [column.strip() for column in header]


def _refuse_binary(name: str, data: bytes) -> None:
    if data.startswith(b"PK\x03\x04"):
        raise ValidationError(f"{name}: this is a zip archive; unzip it and upload the file inside")
    if data.startswith(b"\x1f\x8b"):
        raise ValidationError(f"{name}: this is a gzip archive; decompress it first")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValidationError(f"{name}: the file is UTF-16 text; save it as UTF-8 and retry")
    if b"\x00" in data[:65536]:
        raise ValidationError(f"{name}: this looks like a binary file, not text")


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; stored, they would break every JSON reader downstream.
    raise ValueError(f"{name} is not allowed in JSON")


def _refuse_unstorable(row: SourceRow) -> SourceRow:
    """A row that can't be stored as JSON text becomes a row error: one holding an unpaired
    surrogate (see formats), or one nested too deeply to be written back. Any other row comes
    back with its JSON text."""
    if row.error:
        return row
    try:
        text = json.dumps(row.as_read, ensure_ascii=False, default=str)
        # A mapped row's fields may hold JSON parsed from its cells: checked on their own, first.
        mapped = unpaired_surrogate(row.value) if row.original is not None else None
    except RecursionError:
        return SourceRow(row.line, error="invalid JSON: nested too deeply", raw=row.raw)
    surrogate = mapped or surrogate_in_json(text)
    if surrogate is None:
        return dataclasses.replace(row, as_read_json=text)
    error = f"an unpaired surrogate ({surrogate}): half a character, not valid Unicode text"
    return SourceRow(row.line, error=error, raw=row.raw)


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValidationError(f"{name}: line {line} is not valid UTF-8 text") from None


def _jsonl_rows(data: bytes) -> list[SourceRow]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    rows = []
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        if not raw_line.strip():
            continue
        try:
            text = raw_line.decode("utf-8")
        except UnicodeDecodeError:
            rows.append(SourceRow(number, error="not valid UTF-8 text", raw=repr(raw_line[:100])))
            continue
        preview = text[:RAW_PREVIEW_CHARS]
        try:
            rows.append(
                SourceRow(
                    number, value=json.loads(text, parse_constant=_refuse_constant), raw=preview
                )
            )
        except json.JSONDecodeError as exc:
            rows.append(SourceRow(number, error=f"invalid JSON: {exc.msg} (column {exc.colno})",
                                  raw=preview))  # fmt: skip
        except ValueError as exc:
            rows.append(SourceRow(number, error=f"invalid JSON: {exc}", raw=preview))
        except RecursionError:
            rows.append(SourceRow(number, error="invalid JSON: nested too deeply", raw=preview))
    return rows


def _json_rows(name: str, text: str) -> list[SourceRow]:
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}. "
            "A .json file must be valid as a whole; nothing was imported."
        ) from None
    except ValueError as exc:
        raise ValidationError(f"{name}: invalid JSON: {exc}; nothing was imported.") from None
    except RecursionError:
        raise ValidationError(f"{name}: the JSON is nested too deeply") from None
    if not isinstance(document, list):
        raise ValidationError(
            f"{name}: a .json file must hold an array of examples ([{{...}}, ...]); "
            "for one example per line use .jsonl"
        )
    # Walk the array once more to learn the line where each element starts.
    newlines = [i for i, char in enumerate(text) if char == "\n"]
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    rows = []
    for value in document:
        while text[position] in " \t\r\n,":
            position += 1
        _, end = decoder.raw_decode(text, position)
        line = bisect.bisect_left(newlines, position) + 1
        rows.append(SourceRow(line, value=value, raw=text[position:end][:RAW_PREVIEW_CHARS]))
        position = end
    return rows


def _csv_rows(name: str, text: str) -> list[SourceRow]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [column.strip() for column in next(reader)]
    except StopIteration:
        return []
    except csv.Error as exc:
        raise ValidationError(f"{name}: line 1: unreadable CSV header ({exc})") from None
    if not header or not all(header) or len(set(header)) != len(header):
        raise ValidationError(f"{name}: line 1: the header needs distinct, non-empty column names")
    rows = []
    previous_end = reader.line_num
    while True:
        start = previous_end + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ValidationError(f"{name}: line {start}: unreadable CSV ({exc})") from None
        previous_end = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        raw = ",".join(cells)[:RAW_PREVIEW_CHARS]
        if len(cells) != len(header):
            error = f"has {len(cells)} cells but the header has {len(header)} columns"
            rows.append(SourceRow(start, error=error, raw=raw))
            continue
        value = {column: _cell(column, cell) for column, cell in zip(header, cells, strict=True)}
        rows.append(SourceRow(start, value=value, raw=raw))
    return rows


def _parquet_rows(path: Path, data: bytes) -> list[SourceRow]:
    import pyarrow.parquet as pq

    if not data.startswith(b"PAR1"):
        raise ValidationError(f"{path.name}: not a Parquet file (it does not start with PAR1)")
    try:
        records = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises many types for corrupt files
        raise ValidationError(f"{path.name}: not a readable Parquet file ({exc})") from None
    return [
        SourceRow(number, value=record, raw=json.dumps(record, default=str)[:RAW_PREVIEW_CHARS])
        for number, record in enumerate(records, start=1)
    ]


def _apply_column_map(
    name: str, rows: list[SourceRow], column_map: dict[str, str]
) -> list[SourceRow]:
    """Rename columns to fields (e.g. {"prompt": "question"}); JSON cells become lists."""
    mapping = {field: column for field, column in column_map.items() if column}
    first = next((row.value for row in rows if isinstance(row.value, dict)), None)
    if first is not None:
        unknown = [column for column in mapping.values() if column not in first]
        if unknown:
            raise ValidationError(
                f"{name}: column {', '.join(map(repr, unknown))} not in the file "
                f"(its columns: {', '.join(first)})"
            )
    mapped = []
    for row in rows:
        if not isinstance(row.value, dict):
            mapped.append(row)
            continue
        value = {field: _cell(field, row.value.get(column)) for field, column in mapping.items()}
        mapped.append(SourceRow(row.line, value=value, raw=row.raw, original=row.value))
    return mapped


def _cell(field: str, value: Any) -> Any:
    if field in JSON_CELL_FIELDS and isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            parsed = json.loads(value, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):  # not JSON, NaN, a number too long to convert
            return value
        if field in TEXT_CELL_FIELDS and not _is_messages(field, parsed):
            return value  # text that happens to be JSON (an answer like {"name": "Ada"})
        return parsed
    return value


def _is_messages(field: str, value: Any) -> bool:
    """A list of message objects, or (for a preference answer) one ShareGPT turn."""
    if isinstance(value, dict):
        return field in ("chosen", "rejected") and "from" in value
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
