"""The importer: valid rows land in the dataset with their tokens counted and raw row kept,
bad rows are listed by line, duplicates are skipped, and any failure writes nothing."""

from __future__ import annotations

import csv
import gc
import json
import sqlite3
from pathlib import Path

import pytest

from ftapp.data import importer
from ftapp.data.importer import ImportRejected, import_file, import_problems, write_problems_jsonl
from ftapp.errors import NotFound, ValidationError
from ftapp.store import datasets as store
from tests.helpers import pc, table_counts, write_jsonl


def examples(db) -> list[dict]:
    return list(db.query("SELECT * FROM examples ORDER BY id"))


def messages_of(db) -> list[list[dict[str, str]]]:
    return [json.loads(row["messages_json"]) for row in examples(db)]


def chat(prompt: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


@pytest.fixture
def run(db, count_tokens):
    """import_file with the real tokenizer and a roomy token limit unless told otherwise."""

    def run_import(path, dataset="d", **options):
        options.setdefault("max_tokens", 512)
        return import_file(db, path, dataset, count_tokens=count_tokens, **options)

    return run_import


# --- skip mode --------------------------------------------------------------------------------


def test_skip_mode_imports_valid_rows_and_lists_rejected_ones_by_line(tmp_path, db, run):
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            pc("What is 2+2?", "4"),  # 1
            pc("", "empty prompt"),  # 2
            "not json",  # 3
            pc("Capital of France?", "Paris"),  # 4
            {"prompt": "no completion"},  # 5
            pc("Say " + "very " * 300 + "long", "ok"),  # 6: over the limit
            pc("Blue?", "Yes"),  # 7
        ],
    )
    report = run(path, max_tokens=100)

    assert report.n_rows == 7 and report.n_imported == 3
    assert [p.line for p in report.problems] == [2, 3, 5, 6]
    assert [p.location for p in report.problems] == ["line 2", "line 3", "line 5", "line 6"]
    reasons = [p.reason for p in report.problems]
    assert "empty content" in reasons[0]
    assert reasons[1].startswith("invalid JSON")
    assert reasons[2].startswith("missing field completion")
    assert reasons[3].startswith("longer than the max length: ") and reasons[3].endswith("> 100")
    assert report.problems[1].raw == "not json"
    assert report.summary() == (
        "3 of 7 rows imported into 'd' (jsonl, prompt_completion); 4 rejected"
    )

    assert messages_of(db) == [chat("What is 2+2?", "4"), chat("Capital of France?", "Paris"),
                               chat("Blue?", "Yes")]  # fmt: skip
    stored = examples(db)
    assert [row["source_line"] for row in stored] == [1, 4, 7]
    assert {row["status"] for row in stored} == {"pending"}
    assert {row["import_id"] for row in stored} == {report.import_id}
    assert all(row["original_messages_json"] is None for row in stored)  # set at first edit

    [import_row] = list(db["imports"].rows)
    assert import_row["id"] == report.import_id
    columns = ["file_name", "file_type", "source_format", "on_error", "n_rows", "n_imported",
               "n_rejected", "n_duplicates"]  # fmt: skip
    assert [import_row[column] for column in columns] == [
        "mixed.jsonl", "jsonl", "prompt_completion", "skip", 7, 3, 4, 0
    ]  # fmt: skip
    assert import_problems(db, report.import_id) == report.problems


def test_problems_are_sorted_by_line_across_kinds_of_problem(tmp_path, run):
    # Line 1 is too long (found after token counting), line 2 can't be parsed (found first).
    path = write_jsonl(tmp_path / "a.jsonl", [pc("long " * 300, "x"), "{", pc("ok", "fine"),
                                              "}", pc("long " * 301, "y")])  # fmt: skip
    report = run(path, max_tokens=100)
    assert [p.line for p in report.problems] == [1, 2, 4, 5]


def test_rejected_rows_download_as_jsonl(tmp_path, db, run):
    path = write_jsonl(tmp_path / "a.jsonl", [pc("Q", "A"), pc("Q2", None)])
    report = run(path)
    out = write_problems_jsonl(import_problems(db, report.import_id), tmp_path / "rejected.jsonl")
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"location": "line 2", "line": 2, "reason": "missing or empty field: completion",
         "raw": '{"prompt": "Q2", "completion": null}'}
    ]  # fmt: skip


def test_import_problems_of_an_unknown_import(db):
    with pytest.raises(NotFound, match="no import #99"):
        import_problems(db, 99)


# --- abort mode -------------------------------------------------------------------------------


def test_abort_mode_writes_nothing_for_a_new_dataset(tmp_path, db, run):
    path = write_jsonl(tmp_path / "a.jsonl", [pc("Q1", "A1"), pc("Q2", ""), pc("Q3", "A3"), "x"])
    before = table_counts(db)
    with pytest.raises(ImportRejected) as caught:
        run(path, on_error="abort")
    assert table_counts(db) == before
    assert store.find_dataset(db, "d") is None
    message = str(caught.value)
    assert message.startswith("a.jsonl: 2 of 4 rows are invalid, nothing was imported.")
    assert "line 2: message 2 (assistant): empty content" in message
    assert "line 4: invalid JSON" in message
    report = caught.value.report
    assert isinstance(caught.value, ValidationError)
    assert report.import_id is None and report.n_imported == 0
    assert [p.line for p in report.problems] == [2, 4]


def test_abort_mode_leaves_an_existing_dataset_as_it_was(tmp_path, db, run):
    run(write_jsonl(tmp_path / "first.jsonl", [pc("Q1", "A1"), pc("Q2", "A2")]))
    before, before_rows = table_counts(db), examples(db)

    path = write_jsonl(tmp_path / "second.jsonl", [pc("Q3", "A3"), pc("Q4", "A4"), pc("Q5", 5)])
    with pytest.raises(ImportRejected, match="1 of 3 rows are invalid"):
        run(path, on_error="abort")
    assert table_counts(db) == before
    assert examples(db) == before_rows
    assert db["imports"].count == 1


def test_abort_mode_counts_rows_over_the_token_limit_as_bad(tmp_path, db, run):
    path = write_jsonl(tmp_path / "a.jsonl", [pc("Q", "A"), pc("Q", "word " * 200)])
    with pytest.raises(ImportRejected, match="line 2: longer than the max length"):
        run(path, on_error="abort", max_tokens=100)
    assert table_counts(db)["examples"] == 0


def test_abort_mode_lists_at_most_five_problems_in_the_message(tmp_path, run):
    path = write_jsonl(tmp_path / "a.jsonl", [pc("Q", "A")] + ["{"] * 8)
    with pytest.raises(ImportRejected) as caught:
        run(path, on_error="abort")
    assert "line 6: invalid JSON" in str(caught.value)
    assert "line 7:" not in str(caught.value)
    assert str(caught.value).endswith("; and 3 more")
    assert len(caught.value.report.problems) == 8


def test_abort_mode_imports_when_the_only_problems_are_duplicates(tmp_path, run):
    path = write_jsonl(tmp_path / "a.jsonl", [pc("Q", "A"), pc("Q", "A"), pc("R", "B")])
    report = run(path, on_error="abort")
    assert report.n_imported == 2 and report.problems == []
    assert [p.line for p in report.duplicates] == [2]


# --- duplicates -------------------------------------------------------------------------------


def test_exact_duplicates_within_the_file_are_skipped_and_reported(tmp_path, db, run):
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [
            pc("Q", "A"),  # 1
            pc("Q", "A "),  # 2: not exact
            {"messages": chat("Q", "A")},  # 3: same messages, but not this file's format
            pc("Q", "A"),  # 4: duplicate of 1
            {"prompt": "Q", "completion": "A", "id": 7},  # 5: same content, other metadata
            pc("R", "B"),  # 6
            pc("R", "B"),  # 7: duplicate of 6
        ],
    )
    report = run(path)
    # The messages row is another format than the file's (prompt_completion): rejected.
    assert [p.line for p in report.problems] == [3]
    assert report.problems[0].reason.startswith("missing field prompt, completion")
    assert [(d.location, d.reason) for d in report.duplicates] == [
        ("line 4", "exact duplicate of line 1"),
        ("line 5", "exact duplicate of line 1"),
        ("line 7", "exact duplicate of line 6"),
    ]
    assert [row["source_line"] for row in examples(db)] == [1, 2, 6]
    assert report.summary().endswith("1 rejected; 3 exact duplicates skipped")
    [import_row] = list(db["imports"].rows)
    assert import_row["n_duplicates"] == 3
    assert [d["line"] for d in json.loads(import_row["duplicates_json"])] == [4, 5, 7]


def test_duplicates_of_rows_already_in_the_dataset_name_the_example(tmp_path, db, run):
    run(write_jsonl(tmp_path / "first.jsonl", [pc("Q1", "A1"), pc("Q2", "A2")]))
    ids = {json.loads(row["messages_json"])[0]["content"]: row["id"] for row in examples(db)}

    rows = [pc("Q3", "A3"), pc("Q2", "A2"), pc("Q1", "A1"), pc("Q3", "A3")]
    report = run(write_jsonl(tmp_path / "second.jsonl", rows))
    assert [(d.line, d.reason) for d in report.duplicates] == [
        (2, f"exact duplicate of example #{ids['Q2']} already in the dataset"),
        (3, f"exact duplicate of example #{ids['Q1']} already in the dataset"),
        (4, "exact duplicate of line 1"),
    ]
    assert report.n_imported == 1
    assert db["examples"].count == 3 and db["datasets"].count == 1 and db["imports"].count == 2


def test_the_same_content_in_another_dataset_is_not_a_duplicate(tmp_path, db, run):
    path = write_jsonl(tmp_path / "a.jsonl", [pc("Q", "A")])
    run(path, "one")
    report = run(path, "two")
    assert report.n_imported == 1 and report.duplicates == []
    assert db["examples"].count == 2


def test_reimporting_the_same_file_raises_and_writes_nothing(tmp_path, db, run):
    path = write_jsonl(tmp_path / "a.jsonl", [pc("Q1", "A1"), pc("Q2", "A2")])
    run(path)
    before = table_counts(db)
    with pytest.raises(ImportRejected, match="no row could be imported. every row is a duplicate"):
        run(path)
    assert table_counts(db) == before


def test_a_file_where_every_row_is_bad_or_duplicate_raises_and_writes_nothing(tmp_path, db, run):
    run(write_jsonl(tmp_path / "first.jsonl", [pc("Q1", "A1")]))
    before = table_counts(db)
    path = write_jsonl(tmp_path / "second.jsonl", [pc("Q1", "A1"), pc("", "x"), pc("Q2", 2)])
    with pytest.raises(ImportRejected) as caught:
        run(path)
    assert str(caught.value).startswith("second.jsonl: no row could be imported. line 2: ")
    assert [p.line for p in caught.value.report.problems] == [2, 3]
    assert [d.line for d in caught.value.report.duplicates] == [1]
    assert table_counts(db) == before


def test_a_new_dataset_where_every_row_is_bad_is_not_created(tmp_path, db, run):
    path = write_jsonl(tmp_path / "a.jsonl", [pc("Q", ""), {"prompt": "Q"}])
    with pytest.raises(ImportRejected, match="no row could be imported"):
        run(path, "fresh")
    assert store.find_dataset(db, "fresh") is None
    assert table_counts(db) == {name: 0 for name in table_counts(db)}


# --- limits and arguments ---------------------------------------------------------------------


def test_file_over_max_bytes_is_refused_with_a_clear_message(tmp_path, db, run):
    padding = 1_500_000 - len(json.dumps(pc("Q", "")) + "\n")
    path = write_jsonl(tmp_path / "big.jsonl", [pc("Q", "x" * padding)])
    assert path.stat().st_size == 1_500_000
    before = table_counts(db)
    with pytest.raises(ValidationError) as caught:
        run(path, max_bytes=1_000_000)
    assert str(caught.value) == (
        "big.jsonl: 1.5 MB is over the upload limit of 1.0 MB (FTAPP_MAX_UPLOAD_MB)"
    )
    assert table_counts(db) == before


def test_file_of_exactly_max_bytes_is_accepted(tmp_path, run):
    path = write_jsonl(tmp_path / "a.jsonl", [pc("Q", "A")])
    assert run(path, max_bytes=path.stat().st_size).n_imported == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"on_error": "ignore"}, "on_error must be one of skip, abort; got 'ignore'"),
        ({"fmt": "chatml"}, "format must be one of messages, prompt_completion, alpaca"),
        ({"max_tokens": 0}, "max tokens must be at least 1, got 0"),
    ],
)
def test_bad_options_are_refused(tmp_path, db, run, options, message):
    path = write_jsonl(tmp_path / "a.jsonl", [pc("Q", "A")])
    with pytest.raises(ValidationError, match=message):
        run(path, **options)
    assert table_counts(db) == {name: 0 for name in table_counts(db)}


def test_missing_file(tmp_path, run):
    with pytest.raises(ValidationError, match="nothere.jsonl: file not found"):
        run(tmp_path / "nothere.jsonl")


def test_unknown_fields_say_what_was_expected(tmp_path, db, run):
    path = write_jsonl(tmp_path / "a.jsonl", [{"question": "Q", "answer": "A"}])
    with pytest.raises(ValidationError) as caught:
        run(path)
    assert "can't tell the format from the fields (question, answer)" in str(caught.value)
    assert "For CSV, map the columns" in str(caught.value)
    assert table_counts(db)["datasets"] == 0


def test_file_name_of_the_upload_decides_the_type(tmp_path, db, run):
    """Uploads arrive as temporary files; the user's file name says what they are."""
    upload = tmp_path / "tmp8f3k2a"
    with upload.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["prompt", "completion"], ["Q", "A"]])
    report = run(upload, file_name="C:\\fakepath/faq.csv")
    assert report.file_type == "csv" and report.file_name == "faq.csv"
    assert next(db["imports"].rows)["file_name"] == "faq.csv"


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "", "   ", "..", "a\\b", ".hidden", "-x", "a..b", "x" * 101, "a\nb",
             "/etc/passwd", "nul\x00"],
)  # fmt: skip
def test_path_like_or_empty_dataset_names_are_refused(tmp_path, db, run, name):
    path = write_jsonl(tmp_path / "a.jsonl", [pc("Q", "A")])
    with pytest.raises(ValidationError, match="dataset name"):
        run(path, name)
    assert table_counts(db) == {table: 0 for table in table_counts(db)}


def test_dataset_name_is_trimmed(tmp_path, db, run):
    report = run(write_jsonl(tmp_path / "a.jsonl", [pc("Q", "A")]), "  My data_v1.2  ")
    assert report.dataset == "My data_v1.2"
    assert [row["name"] for row in db["datasets"].rows] == ["My data_v1.2"]


def test_import_into_an_existing_dataset_appends(tmp_path, db, run):
    first = run(write_jsonl(tmp_path / "a.jsonl", [pc("Q1", "A1")]), user="ada")
    second = run(write_jsonl(tmp_path / "b.jsonl", [pc("Q2", "A2")]), user="bob")
    assert first.import_id != second.import_id
    [dataset] = list(db["datasets"].rows)
    assert dataset["created_by"] == "ada"
    assert [row["created_by"] for row in db["imports"].rows] == ["ada", "bob"]
    assert [(row["dataset_id"], row["import_id"]) for row in examples(db)] == [
        (dataset["id"], first.import_id), (dataset["id"], second.import_id)
    ]  # fmt: skip


def test_progress_is_reported_up_to_done(tmp_path, run):
    seen = []
    run(write_jsonl(tmp_path / "a.jsonl", [pc("Q", "A")]),
        progress=lambda fraction, message: seen.append((fraction, message)))  # fmt: skip
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions)
    assert seen[0] == (0.0, "reading a.jsonl") and seen[-1] == (1.0, "done")


# --- CSV column mapping -----------------------------------------------------------------------


def write_faq_csv(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(
            [
                ["id", "question", "answer", "topic"],
                ["1", "What are your hours?", "9 to 5.", "general"],
                ["2", 'Quote "this", please', "Line one,\nline two.", "edge"],
                ["3", "Phone?", "", "contact"],
            ]
        )
    return path


def test_csv_column_mapping(tmp_path, db, run):
    path = write_faq_csv(tmp_path / "faq.csv")
    report = run(path, column_map={"prompt": "question", "completion": "answer"})
    assert report.source_format == "prompt_completion"
    assert messages_of(db) == [chat("What are your hours?", "9 to 5."),
                               chat('Quote "this", please', "Line one,\nline two.")]  # fmt: skip
    assert [row["source_line"] for row in examples(db)] == [2, 3]
    assert [(p.line, p.reason) for p in report.problems] == [
        (5, "message 2 (assistant): empty content")
    ]  # fmt: skip


def test_csv_without_the_mapping_cannot_tell_the_format(tmp_path, db, run):
    with pytest.raises(ValidationError, match=r"fields \(id, question, answer, topic\)"):
        run(write_faq_csv(tmp_path / "faq.csv"))
    assert table_counts(db)["datasets"] == 0


def test_csv_mapping_to_an_unknown_column_is_refused(tmp_path, db, run):
    path = write_faq_csv(tmp_path / "faq.csv")
    with pytest.raises(ValidationError) as caught:
        run(path, column_map={"prompt": "question", "completion": "reply"})
    assert str(caught.value) == (
        "faq.csv: column 'reply' not in the file (its columns: id, question, answer, topic)"
    )
    assert table_counts(db) == {table: 0 for table in table_counts(db)}


# --- what is stored ---------------------------------------------------------------------------

VERBATIM = [
    '=HYPERLINK("http://evil.example", "click")',
    "+1+2",
    "-2+3",
    "@SUM(A1:A2)",
    "\t=1+1",
    "<script>alert('x')</script>",
    "<b>bold</b> &amp; &lt;tag&gt; {{ template }} ${var} %s",
    "'; DROP TABLE examples; --",
    "emoji 🎉, RTL مرحبا, zero\u200bwidth, combining e\u0301",
    "  leading and trailing spaces  \n",
]


@pytest.mark.parametrize("file_type", ["jsonl", "csv"])
def test_formula_like_html_and_odd_text_are_stored_verbatim(tmp_path, db, run, file_type):
    pairs = [(f"Q{i}: {text}", text) for i, text in enumerate(VERBATIM)]
    path = tmp_path / f"a.{file_type}"
    if file_type == "jsonl":
        write_jsonl(path, [pc(q, text) for q, text in pairs])
    else:
        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([["prompt", "completion"], *pairs])
    report = run(path)
    assert report.problems == []
    assert messages_of(db) == [chat(q, text) for q, text in pairs]
    assert [json.loads(row["raw_json"]) for row in examples(db)] == [pc(q, t) for q, t in pairs]


def test_original_row_is_kept_in_raw_json(tmp_path, db, run):
    row = {
        "id": "ex-1",
        "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
        "tools": "[]",
        "meta": {"source": "forum", "score": 0.5, "tags": ["a", "ü"], "ok": True, "none": None},
    }
    run(write_jsonl(tmp_path / "a.jsonl", [row]))
    [stored] = examples(db)
    assert json.loads(stored["raw_json"]) == row
    assert json.loads(stored["messages_json"]) == chat("Hi", "Hello")
    assert stored["tools_json"] is None
    assert "ü" in stored["raw_json"]  # readable text, not \u escapes
    assert store.get_example(db, stored["id"]).raw == row


def test_raw_json_is_the_row_as_read_in_compact_json(tmp_path, db, run):
    rows = [{"system": "Sé breve.", **pc("東京?", "🙂 " * 3), "meta": {"n": 1.5}}, pc("Q", "A")]
    run(write_jsonl(tmp_path / "a.jsonl", rows))
    assert [row["raw_json"] for row in examples(db)] == [
        json.dumps(row, ensure_ascii=False) for row in rows
    ]


def test_tools_are_stored_parsed(tmp_path, db, run):
    tools = [{"name": "get_weather", "parameters": {"type": "object"}}]
    row = {"conversations": [{"from": "human", "value": "Weather?"},
                             {"from": "function_call", "value": '{"name": "get_weather"}'},
                             {"from": "observation", "value": "sunny"},
                             {"from": "gpt", "value": "Sunny."}],
           "tools": json.dumps(tools)}  # fmt: skip
    run(write_jsonl(tmp_path / "a.jsonl", [row]))
    [stored] = examples(db)
    assert json.loads(stored["tools_json"]) == tools
    assert [m["role"] for m in json.loads(stored["messages_json"])] == [
        "user", "assistant", "tool", "assistant"
    ]  # fmt: skip


def test_n_tokens_is_the_real_token_count_of_the_messages(tmp_path, db, run, count_tokens):
    rows = [
        pc("Hi", "Hello"),
        {"system": "You are a pirate.", **pc("Where is the treasure?", "Arr, " * 50)},
        {"prompt": [{"role": "user", "content": "Un"}, {"role": "assistant", "content": "Deux"},
                    {"role": "user", "content": "Trois?"}], "completion": "Quatre. " * 20},
    ]  # fmt: skip
    run(write_jsonl(tmp_path / "a.jsonl", rows))
    stored = examples(db)
    expected = count_tokens([json.loads(row["messages_json"]) for row in stored])
    assert [row["n_tokens"] for row in stored] == expected
    assert expected[0] < expected[2] < expected[1]  # distinct, plausibly sized counts
    assert 5 < expected[0] < 60


def test_n_tokens_are_what_the_tokenizer_gives_each_row_on_its_own(
    tmp_path, db, run, count_tokens, monkeypatch
):
    monkeypatch.setattr(importer, "TOKEN_BATCH", 2)  # several batches, counted in file order
    rows = [
        pc("Hi", "Hello"),
        {"system": "Tu es un assistant très poli.", **pc("Où est Zürich ?", "En Suisse — 🙂")},
        pc("東京の人口は？", "約1400万人です。"),
        {"system": "Отвечай кратко.", **pc("Что такое модель?", "Функция. " * 30)},
        pc("naïve café résumé", "数据 " * 40),
    ]
    run(write_jsonl(tmp_path / "a.jsonl", rows))
    tokenizer = count_tokens.tokenizer  # transformers' ordinary path, one row at a time
    expected = []
    for row in examples(db):
        text = tokenizer.apply_chat_template(json.loads(row["messages_json"]), tokenize=False)
        expected.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    assert [row["n_tokens"] for row in examples(db)] == expected
    assert len(set(expected)) == len(rows)  # distinct rows, distinct counts: none swapped
    texts = ["naïve café 🙂", "", "Отвечай кратко."]
    assert count_tokens.count_text(texts) == [
        len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts
    ]


def test_token_limit_is_inclusive(tmp_path, db, run, count_tokens):
    row = pc("How many tokens is this?", "Exactly as many as the tokenizer says.")
    [n] = count_tokens([chat(row["prompt"], row["completion"])])
    assert run(write_jsonl(tmp_path / "a.jsonl", [row]), "at", max_tokens=n).n_imported == 1
    with pytest.raises(ImportRejected, match=f"longer than the max length: {n} tokens > {n - 1}"):
        run(write_jsonl(tmp_path / "b.jsonl", [row]), "under", max_tokens=n - 1)


# --- all or nothing ---------------------------------------------------------------------------


@pytest.mark.parametrize("existing", [False, True])
def test_a_failure_in_the_middle_of_the_insert_leaves_nothing_behind(tmp_path, db, run, existing):
    if existing:
        run(write_jsonl(tmp_path / "first.jsonl", [pc("Old", "Row")]))
    before, before_rows = table_counts(db), examples(db)
    start = before["examples"]
    db.execute(
        "CREATE TEMP TRIGGER fail_third_example BEFORE INSERT ON examples "
        f"WHEN (SELECT COUNT(*) FROM main.examples) >= {start + 2} "
        "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    path = write_jsonl(tmp_path / "a.jsonl", [pc(f"Q{i}", f"A{i}") for i in range(5)])

    with pytest.raises(sqlite3.IntegrityError, match="disk on fire"):
        run(path)

    assert not db.conn.in_transaction
    assert table_counts(db) == before
    assert examples(db) == before_rows
    assert (store.find_dataset(db, "d") is not None) == existing
    # The connection is still usable and the same import succeeds once the fault is gone.
    db.execute("DROP TRIGGER fail_third_example")
    assert run(path).n_imported == 5


def test_a_failure_is_invisible_to_another_connection(tmp_path, db, run, settings):
    from ftapp.store.db import open_db

    db.execute(
        "CREATE TEMP TRIGGER fail_third_example BEFORE INSERT ON examples "
        "WHEN (SELECT COUNT(*) FROM main.examples) >= 2 "
        "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    with pytest.raises(sqlite3.IntegrityError):
        run(write_jsonl(tmp_path / "a.jsonl", [pc(f"Q{i}", "A") for i in range(5)]))
    other = open_db(settings.db_path)
    try:
        assert table_counts(other) == {table: 0 for table in table_counts(other)}
    finally:
        other.close()


def test_garbage_collection_waits_for_the_import_and_comes_back_on(tmp_path, run):
    during = []
    run(write_jsonl(tmp_path / "a.jsonl", [pc("Q", "A")]),
        progress=lambda fraction, message: during.append(gc.isenabled()))  # fmt: skip
    assert during and not any(during)
    assert gc.isenabled()
    with pytest.raises(ValidationError):
        run(write_jsonl(tmp_path / "b.jsonl", [{"x": 1}]))
    assert gc.isenabled()
    gc.disable()  # off before: left off
    try:
        run(write_jsonl(tmp_path / "c.jsonl", [pc("Q2", "A2")]))
        assert not gc.isenabled()
    finally:
        gc.enable()


# --- size -------------------------------------------------------------------------------------


def test_twenty_thousand_rows(tmp_path, db, run):
    rows = [
        pc(f"Question number {i}: what is {i} + {i}?", f"It is {2 * i}.") for i in range(20_000)
    ]
    rows[12_345] = pc(rows[12_344]["prompt"], rows[12_344]["completion"])  # one duplicate
    path = write_jsonl(tmp_path / "big.jsonl", rows)

    report = run(path)

    assert report.n_rows == 20_000 and report.n_imported == 19_999
    assert [(d.line, d.reason) for d in report.duplicates] == [
        (12_346, "exact duplicate of line 12345")
    ]  # fmt: skip
    assert db["examples"].count == 19_999
    last = next(db.query("SELECT * FROM examples ORDER BY id DESC LIMIT 1"))
    assert last["source_line"] == 20_000
    assert json.loads(last["messages_json"]) == chat(
        "Question number 19999: what is 19999 + 19999?", "It is 39998."
    )
    assert next(db.query("SELECT COUNT(*) AS n FROM examples WHERE n_tokens > 0"))["n"] == 19_999


def test_column_mapping_keeps_the_whole_original_row(tmp_path, db, run):
    path = tmp_path / "m.csv"
    path.write_text("id,topic,question,answer\n7,geo,Capital of France?,Paris\n")
    run(path, column_map={"prompt": "question", "completion": "answer"})
    [example] = db["examples"].rows
    assert json.loads(example["raw_json"]) == {
        "id": "7", "topic": "geo", "question": "Capital of France?", "answer": "Paris"}  # fmt: skip


def test_nan_is_not_json(tmp_path, db, run):
    path = write_jsonl(tmp_path / "n.jsonl", [pc("Q", "A"), '{"prompt": "q", "completion": NaN}'])
    report = run(path)
    assert [(p.line, p.reason) for p in report.problems] == [
        (2, "invalid JSON: NaN is not allowed in JSON")]  # fmt: skip
