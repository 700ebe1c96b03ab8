"""Readers: every row remembers the line it starts on, and files that can't be read at all are
refused with a clear message (naming the line where there is one), never a crash."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ftapp.data.importer import import_file
from ftapp.data.readers import csv_header, file_type_of, read_rows
from ftapp.errors import ValidationError
from tests.helpers import pc, table_counts, write_jsonl

BOM = b"\xef\xbb\xbf"


def lines_and_values(rows):
    return [(row.line, row.value) for row in rows]


def write_csv(path: Path, rows: list[list[str]], **kwargs) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, **kwargs).writerows(rows)
    return path


# --- file types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.jsonl", "jsonl"), ("a.ndjson", "jsonl"), ("A.JSONL", "jsonl"), ("a.json", "json"),
     ("dir/a.b.csv", "csv"), ("a.Parquet", "parquet")],
)  # fmt: skip
def test_file_type_of_known_extensions(name, expected):
    assert file_type_of(name) == expected


@pytest.mark.parametrize("name", ["a.txt", "a.zip", "a.jsonl.gz", "a", "a.xlsx", ".jsonl.bak"])
def test_unsupported_extension_is_refused_naming_it(name):
    with pytest.raises(ValidationError, match="unsupported file type") as caught:
        file_type_of(name)
    assert "use .jsonl, .ndjson, .json, .csv, .parquet" in str(caught.value)


@pytest.mark.parametrize("name", ["notes.txt", "data.zip"])
def test_import_of_unsupported_extension_writes_nothing(tmp_path, db, count_tokens, name):
    path = tmp_path / name
    path.write_text(json.dumps(pc("Q", "A")) + "\n", encoding="utf-8")
    before = table_counts(db)
    with pytest.raises(ValidationError, match=f"{name}: unsupported file type"):
        import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    assert table_counts(db) == before


# --- JSONL ------------------------------------------------------------------------------------


def test_jsonl_line_numbers_count_blank_lines(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(
        "\n"
        '{"prompt": "one", "completion": "1"}\n'
        "   \n"
        "\n"
        '{"prompt": "two", "completion": "2"}\n'
        "\t\n"
        '{"prompt": "three", "completion": "3"}',  # no newline at the end
        encoding="utf-8",
    )
    assert lines_and_values(read_rows(path, "jsonl")) == [
        (2, pc("one", "1")), (5, pc("two", "2")), (7, pc("three", "3"))
    ]  # fmt: skip


def test_jsonl_with_crlf_line_endings_and_unicode_separators(tmp_path):
    # U+2028 inside a string is not a line break for JSONL (bytes split on \n only).
    path = tmp_path / "a.jsonl"
    path.write_bytes(
        b'{"prompt": "a\xe2\x80\xa8b", "completion": "x"}\r\n\r\n{"prompt": "c", "completion": "d"}'
        b"\r\n"
    )
    assert lines_and_values(read_rows(path, "jsonl")) == [
        (1, pc("a\u2028b", "x")), (3, pc("c", "d"))
    ]  # fmt: skip


def test_jsonl_with_a_utf8_bom(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(
        BOM + b'{"prompt": "q", "completion": "a"}\n{"prompt": "r", "completion": "b"}'
    )
    rows = read_rows(path, "jsonl")
    assert lines_and_values(rows) == [(1, pc("q", "a")), (2, pc("r", "b"))]
    assert all(row.error is None for row in rows)


def test_jsonl_invalid_json_is_a_row_error_with_column(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [pc("q", "a"), '{"prompt": "q" "completion": 1}'])
    good, bad = read_rows(path, "jsonl")
    assert good.error is None
    assert bad.line == 2 and bad.value is None
    assert bad.error == "invalid JSON: Expecting ',' delimiter (column 16)"
    assert bad.raw == '{"prompt": "q" "completion": 1}'


def test_jsonl_invalid_utf8_on_one_line_rejects_only_that_row(tmp_path, db, count_tokens):
    path = tmp_path / "a.jsonl"
    path.write_bytes(
        b'{"prompt": "caf\xc3\xa9", "completion": "ok"}\n'
        b'{"prompt": "caf\xe9", "completion": "latin-1"}\n'
        b'{"prompt": "tea", "completion": "ok"}\n'
    )
    rows = read_rows(path, "jsonl")
    assert [(row.line, row.error) for row in rows] == [
        (1, None), (2, "not valid UTF-8 text"), (3, None)
    ]  # fmt: skip

    report = import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    assert [(p.line, p.reason) for p in report.problems] == [(2, "not valid UTF-8 text")]
    stored = list(db["examples"].rows)
    assert [(row["source_line"], json.loads(row["raw_json"])) for row in stored] == [
        (1, pc("café", "ok")), (3, pc("tea", "ok"))
    ]  # fmt: skip


def test_jsonl_deep_nesting_is_a_row_error_not_a_crash(tmp_path, db, count_tokens):
    path = write_jsonl(tmp_path / "a.jsonl", [pc("q", "a"), "[" * 100_000, '{"a":' * 100_000,
                                              pc("r", "b")])  # fmt: skip
    rows = read_rows(path, "jsonl")
    assert [(row.line, row.error) for row in rows] == [
        (1, None), (2, "invalid JSON: nested too deeply"), (3, "invalid JSON: nested too deeply"),
        (4, None),
    ]  # fmt: skip
    assert len(rows[1].raw) == 300  # a preview, not the whole line

    report = import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    assert report.n_imported == 2
    assert [p.line for p in report.problems] == [2, 3]


def test_jsonl_where_no_line_can_be_read_names_the_lines(tmp_path, db, count_tokens):
    path = write_jsonl(tmp_path / "a.jsonl", ["[" * 100_000, "{oops}"])
    before = table_counts(db)
    with pytest.raises(ValidationError) as caught:
        import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    message = str(caught.value)
    assert "no row could be read" in message
    assert "line 1: invalid JSON: nested too deeply" in message
    assert "line 2: invalid JSON" in message
    assert table_counts(db) == before


# --- JSON arrays ------------------------------------------------------------------------------


def test_json_array_rows_start_on_the_line_of_their_opening_brace(tmp_path):
    text = (
        "[\n"  # 1
        "  {\n"  # 2: first element
        '    "messages": [\n'
        '      {"role": "user", "content": "a [bracket] and a {brace}"},\n'
        '      {"role": "assistant", "content": "line\\nbreak"}\n'
        "    ]\n"
        "  },\n"  # 7
        '  {"prompt": "two", "completion": "2"}, {"prompt": "three", "completion": "3"},\n'  # 8
        "\n"
        "  [1, 2],\n"  # 10: not an object, still a row
        "  {\n"  # 11
        '    "prompt": "four",\n'
        '    "completion": "4"\n'
        "  }\n"
        "]\n"
    )
    path = tmp_path / "a.json"
    path.write_text(text, encoding="utf-8")
    rows = read_rows(path, "json")
    assert [row.line for row in rows] == [2, 8, 8, 10, 11]
    assert rows[0].value["messages"][1]["content"] == "line\nbreak"
    assert [row.value for row in rows[1:]] == [pc("two", "2"), pc("three", "3"), [1, 2],
                                               pc("four", "4")]  # fmt: skip
    assert rows[3].raw == "[1, 2]"


def test_json_pretty_printed_by_json_dumps(tmp_path):
    examples = [pc(f"q{i}", f"a{i}") for i in range(3)]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(examples, indent=2), encoding="utf-8")
    # "[", then 4 lines per element: "{", "prompt", "completion", "},"
    assert lines_and_values(read_rows(path, "json")) == [(2, examples[0]), (6, examples[1]),
                                                          (10, examples[2])]  # fmt: skip


def test_json_with_bom_and_crlf(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(BOM + b'\r\n [\r\n{"prompt": "q", "completion": "a"},\r\n\r\n'
                     b'{"prompt": "r", "completion": "b"}]\r\n')  # fmt: skip
    assert lines_and_values(read_rows(path, "json")) == [(3, pc("q", "a")), (5, pc("r", "b"))]


def test_json_imported_rows_keep_their_start_lines(tmp_path, db, count_tokens):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([pc("q1", "a1"), pc("", "empty"), pc("q3", "a3")], indent=1))
    report = import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    assert [(p.location, p.reason) for p in report.problems] == [
        ("line 6", "message 1 (user): empty content")
    ]  # fmt: skip
    assert [row["source_line"] for row in db["examples"].rows] == [2, 10]


def test_truncated_json_array_names_line_and_column(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n  {"prompt": "a", "completion": "b"},\n  {"prompt": "c", "compl')
    with pytest.raises(ValidationError) as caught:
        read_rows(path, "json")
    message = str(caught.value)
    assert message.startswith("a.json: invalid JSON at line 3, column ")
    assert "nothing was imported" in message


def test_json_syntax_error_in_the_middle_names_its_line(tmp_path, db, count_tokens):
    path = tmp_path / "a.json"
    path.write_text('[\n{"prompt": "a", "completion": "b"},\n{"prompt": "c" "completion": "d"}\n]')
    before = table_counts(db)
    with pytest.raises(ValidationError, match=r"invalid JSON at line 3, column 16: Expecting ','"):
        import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    assert table_counts(db) == before


@pytest.mark.parametrize("document", ['{"prompt": "a", "completion": "b"}', '"text"', "42", "null"])
def test_json_holding_something_other_than_an_array_is_refused(tmp_path, document):
    path = tmp_path / "a.json"
    path.write_text(document)
    with pytest.raises(ValidationError, match=r"must hold an array of examples.*use \.jsonl"):
        read_rows(path, "json")


def test_json_lines_in_a_json_file_point_to_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "a.json", [pc("a", "b"), pc("c", "d")])
    with pytest.raises(ValidationError, match="invalid JSON at line 2, column 1: Extra data"):
        read_rows(path, "json")


def test_json_deep_nesting_is_a_clean_error(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("[" * 100_000)
    with pytest.raises(ValidationError, match="a.json: the JSON is nested too deeply"):
        read_rows(path, "json")


def test_json_invalid_utf8_is_a_file_error_naming_the_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(
        b'[\n{"prompt": "a", "completion": "b"},\n{"prompt": "\xff", "completion": "d"}]'
    )
    with pytest.raises(ValidationError, match="a.json: line 3 is not valid UTF-8 text"):
        read_rows(path, "json")


# --- CSV --------------------------------------------------------------------------------------


def test_csv_rows_start_lines_with_embedded_newlines_and_quotes(tmp_path):
    path = write_csv(
        tmp_path / "a.csv",
        [
            ["prompt", "completion"],  # line 1
            ['Say "hi", please', "hi"],  # line 2
            ["Two\nlines", "and\nthree\nlines"],  # lines 3-6 (three line breaks inside)
            ["plain", "row"],  # line 7
            ["", ""],  # line 8: empty cells only, skipped
            ['quote " inside\r\nand CRLF', "x,y"],  # lines 9-10
            ["last", "row"],  # line 11
        ],
    )
    rows = read_rows(path, "csv")
    assert lines_and_values(rows) == [
        (2, pc('Say "hi", please', "hi")),
        (3, pc("Two\nlines", "and\nthree\nlines")),
        (7, pc("plain", "row")),
        (9, pc('quote " inside\r\nand CRLF', "x,y")),
        (11, pc("last", "row")),
    ]
    # Cross-check against the file itself: each row's line is where its text begins.
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [lines[row.line - 1][:6] for row in rows] == [
        '"Say "', '"Two', "plain,", '"quote', "last,r"
    ]  # fmt: skip


def test_csv_blank_lines_count(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('prompt,completion\n\na,b\n\n\n"c\n\nx",d\r\ne,f', encoding="utf-8")
    assert lines_and_values(read_rows(path, "csv")) == [
        (3, pc("a", "b")), (6, pc("c\n\nx", "d")), (9, pc("e", "f"))
    ]  # fmt: skip


def test_csv_imported_rows_keep_their_start_lines(tmp_path, db, count_tokens):
    path = write_csv(tmp_path / "a.csv", [["prompt", "completion"], ["q\n1", "a"], ["", "a"],
                                          ["q3", "a\n\n3"], ["q4", "a4"]])  # fmt: skip
    report = import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    assert [p.location for p in report.problems] == ["line 4"]
    assert [row["source_line"] for row in db["examples"].rows] == [2, 5, 8]


def test_csv_with_bom_has_clean_column_names(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(BOM + b"prompt,completion\r\nq,a\r\n")
    assert lines_and_values(read_rows(path, "csv")) == [(2, pc("q", "a"))]
    assert csv_header(path) == ["prompt", "completion"]


def test_csv_header_names_are_stripped(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(" prompt , completion\nq , a \n")
    assert csv_header(path) == ["prompt", "completion"]
    # Cells are kept verbatim; only the header names are trimmed.
    assert lines_and_values(read_rows(path, "csv")) == [(2, pc("q ", " a "))]


def test_csv_ragged_rows_are_row_errors(tmp_path, db, count_tokens):
    path = tmp_path / "a.csv"
    path.write_text("prompt,completion\nq1,a1,extra\nq2\nq3,a3\n")
    rows = read_rows(path, "csv")
    assert [(row.line, row.error) for row in rows] == [
        (2, "has 3 cells but the header has 2 columns"),
        (3, "has 1 cells but the header has 2 columns"),
        (4, None),
    ]
    report = import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    assert [p.line for p in report.problems] == [2, 3]
    assert [row["source_line"] for row in db["examples"].rows] == [4]


@pytest.mark.parametrize(
    "header",
    ["prompt,prompt", "prompt, prompt", "prompt,,completion", "prompt,completion,", ",", ""],
)
def test_csv_with_duplicate_or_empty_header_names_is_refused(tmp_path, header):
    path = tmp_path / "a.csv"
    path.write_text(f"{header}\nq,a,b\n")
    with pytest.raises(ValidationError, match="line 1: the header needs distinct, non-empty"):
        read_rows(path, "csv")


def test_csv_with_only_a_header_has_no_rows(tmp_path, db, count_tokens):
    path = tmp_path / "a.csv"
    path.write_text("prompt,completion\n\n")
    assert read_rows(path, "csv") == []
    with pytest.raises(ValidationError, match="a.csv: the file has no rows"):
        import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)


def test_csv_invalid_utf8_is_a_file_error_naming_the_line(tmp_path, db, count_tokens):
    path = tmp_path / "a.csv"
    path.write_bytes(b'prompt,completion\nq,a\n"multi\nline",caf\xe9\n')
    with pytest.raises(ValidationError, match="a.csv: line 4 is not valid UTF-8 text"):
        read_rows(path, "csv")
    before = table_counts(db)
    with pytest.raises(ValidationError, match="line 4 is not valid UTF-8"):
        import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    assert table_counts(db) == before


def test_csv_json_cells_become_lists(tmp_path):
    messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    path = write_csv(tmp_path / "a.csv", [["messages", "tools"],
                                          [json.dumps(messages), '[{"name": "f"}]']])  # fmt: skip
    [row] = read_rows(path, "csv")
    assert row.value == {"messages": messages, "tools": [{"name": "f"}]}


def test_csv_answer_that_looks_like_json_stays_text(tmp_path, db, count_tokens):
    """A model trained to answer in JSON: the answer cell must stay the text it is."""
    path = write_csv(
        tmp_path / "a.csv",
        [
            ["prompt", "completion"],
            ["Give Ada as JSON.", '{"name": "Ada", "born": 1815}'],
            ["First three primes as a JSON list.", "[2, 3, 5]"],
            ["[citation needed]", "[Not JSON"],
        ],
    )
    report = import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    assert report.problems == []
    assert [json.loads(row["messages_json"])[1]["content"] for row in db["examples"].rows] == [
        '{"name": "Ada", "born": 1815}', "[2, 3, 5]", "[Not JSON"
    ]  # fmt: skip


def test_csv_prompt_cell_with_a_message_list_is_conversational(tmp_path):
    prompt = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    path = write_csv(tmp_path / "a.csv", [["prompt", "completion"], [json.dumps(prompt), "A"]])
    [row] = read_rows(path, "csv")
    assert row.value == {"prompt": prompt, "completion": "A"}


def test_csv_deeply_nested_json_cell_is_a_row_error_not_a_crash(tmp_path, db, count_tokens):
    good = json.dumps([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}])
    path = write_csv(tmp_path / "a.csv", [["messages"], ["[" * 100_000], [good]])
    report = import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    assert [(p.line, p.reason) for p in report.problems] == [
        (2, "field 'messages' must be a list, got text")
    ]  # fmt: skip
    assert [row["source_line"] for row in db["examples"].rows] == [3]


def test_csv_cell_over_the_csv_modules_default_limit_is_read_as_a_row(tmp_path):
    """A 200k-character cell is a (too long) example for the token limit to reject, not a file
    the csv module refuses whole."""
    path = write_csv(tmp_path / "a.csv", [["prompt", "completion"], ["q", "a"],
                                          ["q", "x" * 200_000]])  # fmt: skip
    rows = read_rows(path, "csv")
    assert [row.line for row in rows] == [2, 3]
    assert len(rows[1].value["completion"]) == 200_000


def test_csv_column_mapping_renames_and_drops_other_columns(tmp_path):
    path = write_csv(tmp_path / "a.csv", [["id", "question", "answer"], ["1", "Q", '{"a": 1}']])
    [row] = read_rows(path, "csv", {"prompt": "question", "completion": "answer", "system": ""})
    assert row.line == 2
    assert row.value == {"prompt": "Q", "completion": '{"a": 1}'}


def test_csv_column_mapping_with_an_unknown_column(tmp_path):
    path = write_csv(tmp_path / "a.csv", [["question", "answer"], ["Q", "A"]])
    with pytest.raises(ValidationError) as caught:
        read_rows(path, "csv", {"prompt": "question", "completion": "reply"})
    assert (
        str(caught.value) == "a.csv: column 'reply' not in the file (its columns: question, answer)"
    )


# --- Parquet ----------------------------------------------------------------------------------


def test_parquet_rows_are_numbered_from_one(tmp_path, db, count_tokens):
    table = pa.table(
        {
            "messages": [
                [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}],
                [{"role": "user", "content": "Q2"}],
                [{"role": "user", "content": "Q3"}, {"role": "assistant", "content": "A3"}],
            ],
            "score": [1.5, 2.0, None],
        }
    )
    path = tmp_path / "a.parquet"
    pq.write_table(table, path)
    rows = read_rows(path, "parquet")
    assert [row.line for row in rows] == [1, 2, 3]
    assert rows[0].value == {"messages": table["messages"][0].as_py(), "score": 1.5}
    assert rows[0].value["messages"][1] == {"role": "assistant", "content": "A1"}

    report = import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    assert report.file_type == "parquet"
    assert [(p.location, p.line, p.reason) for p in report.problems] == [
        ("row 2", 2, "no assistant turn to learn from")
    ]  # fmt: skip
    assert [row["source_line"] for row in db["examples"].rows] == [1, 3]


def test_parquet_with_column_mapping(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"q": ["Q1", "Q2"], "r": ["A1", "A2"]}), path)
    rows = read_rows(path, "parquet", {"prompt": "q", "completion": "r"})
    assert lines_and_values(rows) == [(1, pc("Q1", "A1")), (2, pc("Q2", "A2"))]


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "a.parquet"
    path.write_text("prompt,completion\nq,a\n")
    with pytest.raises(ValidationError, match="a.parquet: not a Parquet file"):
        read_rows(path, "parquet")


def test_corrupt_parquet_file(tmp_path):
    good = io.BytesIO()
    pq.write_table(pa.table({"prompt": ["q"] * 100, "completion": ["a"] * 100}), good)
    data = good.getvalue()
    path = tmp_path / "a.parquet"
    path.write_bytes(data[: len(data) // 2])  # starts with PAR1, footer cut off
    with pytest.raises(ValidationError, match="a.parquet: not a readable Parquet file"):
        read_rows(path, "parquet")


# --- files that are not what they claim -------------------------------------------------------


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.jsonl", json.dumps(pc("q", "a")) + "\n")
    return buffer.getvalue()


@pytest.mark.parametrize("file_type", ["jsonl", "json", "csv"])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(_zip_bytes(), "this is a zip archive; unzip it", id="zip"),
        pytest.param(gzip.compress(b'{"prompt": "q", "completion": "a"}\n'),
                     "this is a gzip archive; decompress it first", id="gzip"),
        pytest.param(bytes(range(256)) * 4, "this looks like a binary file, not text",
                     id="binary"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file", id="png"),
        pytest.param('{"prompt": "q"}'.encode("utf-16"), "save it as UTF-8", id="utf16"),
    ],
)  # fmt: skip
def test_archives_and_binary_files_are_refused(tmp_path, db, count_tokens, file_type, content,
                                               message):  # fmt: skip
    path = tmp_path / f"upload.{file_type}"
    path.write_bytes(content)
    with pytest.raises(ValidationError, match=message):
        read_rows(path, file_type)
    before = table_counts(db)
    with pytest.raises(ValidationError, match=f"upload.{file_type}: "):
        import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    assert table_counts(db) == before


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.jsonl", b"", "a.jsonl: the file has no rows"),
        ("a.jsonl", b"\n\n  \n", "a.jsonl: the file has no rows"),
        ("a.jsonl", BOM, "a.jsonl: the file has no rows"),
        ("a.csv", b"", "a.csv: the file has no rows"),
        ("a.json", b"", "a.json: invalid JSON at line 1, column 1"),
        ("a.json", b"[]", "a.json: the file has no rows"),
        ("a.json", b"  [ \n ] ", "a.json: the file has no rows"),
        ("a.parquet", b"", "a.parquet: not a Parquet file"),
    ],
)
def test_empty_files_are_refused(tmp_path, db, count_tokens, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    before = table_counts(db)
    with pytest.raises(ValidationError, match=message):
        import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    assert table_counts(db) == before


def test_empty_parquet_table_has_no_rows(tmp_path, db, count_tokens):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"prompt": pa.array([], pa.string())}), path)
    assert read_rows(path, "parquet") == []
    with pytest.raises(ValidationError, match="the file has no rows"):
        import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
