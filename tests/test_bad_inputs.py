"""The corpus of hostile and broken inputs (tests/fixtures/bad_inputs/) through the core: every
file through the importer (skip and abort) and through the Evaluate / Arena prompt-file
reader, the typed field values (dataset names, searches, upload names), and big inputs made
at run time. A refused input names the file (and the line) and changes no table; an accepted
one is stored exactly as written, and every CSV export neutralises its formulas.

Adding a file to the corpus adds test cases: it must get a line in the README and an expected
outcome in CASES below, or the listing test fails.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from ftapp.arena.battles import record_vote
from ftapp.arena.export import write_battles
from ftapp.arena.generation import generate_pending as generate_session_answers
from ftapp.arena.prompts import prompts_from_file
from ftapp.arena.sessions import create_session, next_battle
from ftapp.data.export import export_dataset
from ftapp.data.importer import ImportRejected, import_file
from ftapp.data.readers import csv_header
from ftapp.data.review import set_status_where
from ftapp.errors import ValidationError
from ftapp.evaluation.report import write_results
from ftapp.evaluation.runs import create_run
from ftapp.files import FORMULA_STARTS
from ftapp.serving.backend import Sampling
from ftapp.store import arena as arena_store
from ftapp.store import datasets as store
from tests.arena.conftest import arena_home, reviewer
from tests.evaluation.conftest import generate_all
from tests.helpers import pc, table_counts, write_jsonl

CORPUS = Path(__file__).parent / "fixtures" / "bad_inputs"
NOT_UPLOADS = ("README.md", "fields.json")
FIELDS = json.loads((CORPUS / "fields.json").read_text(encoding="utf-8"))
MAX_TOKENS = 2048  # the app's default
MAX_FIXTURE_BYTES = 100_000


@dataclass(frozen=True)
class Refused:
    """A ValidationError whose message starts with the file name and contains `says`."""

    says: str


@dataclass(frozen=True)
class Skipped:
    """on_error=skip imports `imported` rows and lists `lines` as bad (the first one's reason
    contains `says`); on_error=abort writes nothing and names the first bad line."""

    imported: int
    lines: tuple[int, ...]
    says: str


@dataclass(frozen=True)
class Accepted:
    """Every row imported (or read as a prompt), its text exactly as in the file."""

    rows: int


def same(outcome: Refused) -> tuple[Refused, Refused]:
    return outcome, outcome


# file -> (what the importer does, what the prompt-file reader does)
CASES: dict[str, tuple[Refused | Skipped | Accepted, Refused | Accepted]] = {
    "archive.zip": same(Refused("unsupported file type '.zip'")),
    "bad_header.csv": same(Refused("line 1: the header needs distinct, non-empty column names")),
    "bad_roles.jsonl": same(Refused("line 1: message 1: unknown role 'admin'")),
    "blank_lines.jsonl": same(Refused("the file has no rows")),
    "bom.csv": (Accepted(2), Accepted(2)),
    "bom.json": (Accepted(2), Accepted(2)),
    "bom.jsonl": (Accepted(2), Accepted(2)),
    "control_chars.jsonl": (Accepted(2), Accepted(2)),
    "corrupt.parquet": same(Refused("not a readable Parquet file")),
    "csv_quotes_newlines.csv": (Accepted(3), Accepted(3)),
    "csv_ragged.csv": (Skipped(2, (3, 4), "has 3 cells but the header has 2 columns"),
                       Refused("line 3: has 3 cells")),
    "csv_unterminated_quote.csv": (Skipped(1, (3,), "has 1 cells but the header has 2"),
                                   Refused("line 3: has 1 cells")),
    "deep_nesting.json": same(Refused("nested too deeply")),
    "deep_nesting.jsonl": (Skipped(1, (2,), "nested too deeply"),
                           Refused("line 2: invalid JSON: nested too deeply")),
    "empty.csv": same(Refused("the file has no rows")),
    "empty.json": same(Refused("invalid JSON at line 1, column 1")),
    "empty.jsonl": same(Refused("the file has no rows")),
    "formula_injection.csv": (Accepted(4), Accepted(4)),
    "formula_injection.jsonl": (Accepted(4), Accepted(4)),
    "gzip_renamed.jsonl": same(Refused("this is a gzip archive")),
    "header_only.csv": same(Refused("the file has no rows")),
    "html_script.jsonl": (Accepted(3), Accepted(3)),
    "huge_integer.jsonl": (Skipped(1, (2,), "invalid JSON"), Refused("line 2: invalid JSON")),
    "huge_integer_cell.csv": (Skipped(1, (3,), "field 'messages' must be a list, got text"),
                              Refused("line 3: field 'messages' must be a list")),
    "image_renamed.csv": same(Refused("this looks like a binary file")),
    "image_renamed.jsonl": same(Refused("this looks like a binary file")),
    "invalid_utf8.csv": same(Refused("line 3 is not valid UTF-8")),
    "invalid_utf8.json": same(Refused("line 3 is not valid UTF-8")),
    "invalid_utf8.jsonl": (Skipped(2, (2,), "not valid UTF-8"), Refused("line 2: not valid UTF-8")),
    "lone_surrogate.json": (Skipped(1, (3,), "an unpaired surrogate (\\udc00)"),
                            Refused("line 3: an unpaired surrogate (\\udc00)")),
    "lone_surrogate.jsonl": (Skipped(2, (2,), "an unpaired surrogate (\\ud83d)"),
                             Refused("line 2: an unpaired surrogate (\\ud83d)")),
    "lone_surrogate_cell.csv": (Skipped(1, (3,), "an unpaired surrogate (\\udfff)"),
                                Refused("line 3: an unpaired surrogate (\\udfff)")),
    "lone_surrogate_tools.jsonl": (
        Skipped(1, (2,), "field 'tools' holds an unpaired surrogate (\\ud83d)"),
        Refused("line 2: field 'tools' holds an unpaired surrogate (\\ud83d)")),
    "long_prompt.jsonl": (Skipped(1, (1,), "longer than the max length"),
                          Refused("prompt 1 is 60,000 characters; the limit is 50,000")),
    "nan_infinity.jsonl": (Skipped(1, (2, 3, 4), "NaN is not allowed"),
                           Refused("line 2: invalid JSON: NaN is not allowed")),
    "nan_tools.csv": (Skipped(1, (3,), "field 'tools' is not valid JSON"),
                      Refused("line 3: field 'tools' is not valid JSON")),
    "nan_tools.jsonl": (Skipped(1, (2,), "field 'tools' is not valid JSON"),
                        Refused("line 2: field 'tools' is not valid JSON")),
    "nested_prompt_types.jsonl": (
        Skipped(1, (2, 3, 4, 5, 6), "field 'prompt' must be text or a list of messages"),
        Refused("line 2: field 'prompt' must be text or a list of messages, got an object")),
    "nested_types.jsonl": (Skipped(1, (2, 3, 4, 5, 6, 7, 8), "content must be text, got an object"),
                           Refused("line 2: message 1 (user): content must be text")),
    "no_extension": same(Refused("unsupported file type ''")),
    "not_parquet.parquet": same(Refused("not a Parquet file")),
    "notes.txt": same(Refused("unsupported file type '.txt'")),
    "object_not_array.json": same(Refused("a .json file must hold an array")),
    "program.json": same(Refused("this looks like a binary file")),
    "rtl_overrides.jsonl": (Accepted(3), Accepted(3)),
    "scalars.jsonl": (Refused("can't tell the format from the fields (no JSON objects)"),
                      Refused("line 1: expected {\"prompt\": ...}")),
    "sql_strings.jsonl": (Accepted(3), Accepted(3)),
    "truncated.json": same(Refused("invalid JSON at line 3")),
    "truncated.jsonl": (Skipped(3, (4,), "invalid JSON: Unterminated string"),
                        Refused("line 4: invalid JSON")),
    "utf16.jsonl": same(Refused("UTF-16 text; save it as UTF-8")),
    "wrong_schema.jsonl": (Refused("can't tell the format from the fields (question, answer)"),
                           Refused("line 1: expected {\"prompt\": ...}")),
    "zip_renamed.jsonl": same(Refused("this is a zip archive; unzip it")),
}  # fmt: skip
UPLOADS = sorted(p.name for p in CORPUS.iterdir() if p.name not in NOT_UPLOADS)


def rows_as_written(path: Path) -> list[dict]:
    """The rows of an accepted corpus file read with the standard library alone: what ftapp
    must store, character for character."""
    text = path.read_bytes().decode("utf-8-sig")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.split("\n") if line.strip()]
    if path.suffix == ".json":
        return json.loads(text)
    return list(csv.DictReader(io.StringIO(text, newline="")))


def chat_of(row: dict) -> list[dict[str, str]]:
    return [{"role": "user", "content": row["prompt"]},
            {"role": "assistant", "content": row["completion"]}]  # fmt: skip


@pytest.fixture
def run_import(db, count_tokens):
    def run(path: Path, dataset: str = "hostile", **options):
        return import_file(db, path, dataset, count_tokens=count_tokens, max_tokens=MAX_TOKENS,
                           **options)  # fmt: skip

    return run


def stored(db, dataset: str = "hostile") -> list[dict]:
    return list(db.query(
        "SELECT e.* FROM examples e JOIN datasets d ON d.id = e.dataset_id WHERE d.name = ? "
        "ORDER BY e.id", [dataset]))  # fmt: skip


def assert_names_the_file(message: str, name: str, says: str) -> None:
    assert message.startswith(name), message
    assert says in message, message


# --- the corpus itself --------------------------------------------------------------------


def test_every_file_is_listed_in_the_readme_and_has_an_expected_outcome():
    listed = re.findall(r"^\| ([^ |]+) \|", (CORPUS / "README.md").read_text(), re.MULTILINE)
    assert listed[0] == "file"
    assert sorted(listed[1:]) == sorted(p.name for p in CORPUS.iterdir() if p.name != "README.md")
    assert sorted(CASES) == UPLOADS
    assert len(UPLOADS) >= 30


@pytest.mark.parametrize("name", [p.name for p in sorted(CORPUS.iterdir())])
def test_corpus_files_are_small(name):
    assert (CORPUS / name).stat().st_size < MAX_FIXTURE_BYTES


# --- every file through the importer ----------------------------------------------------------


@pytest.mark.parametrize("name", UPLOADS)
def test_import(name, db, run_import, tmp_path):
    path = CORPUS / name
    expected = CASES[name][0]
    before = table_counts(db)

    if isinstance(expected, Refused):
        for on_error in ("skip", "abort"):
            with pytest.raises(ValidationError) as raised:
                run_import(path, on_error=on_error)
            assert_names_the_file(str(raised.value), name, expected.says)
            assert table_counts(db) == before

    elif isinstance(expected, Skipped):
        with pytest.raises(ImportRejected) as raised:
            run_import(path, on_error="abort")
        assert_names_the_file(str(raised.value), name, f"line {expected.lines[0]}: ")
        assert table_counts(db) == before

        report = run_import(path, on_error="skip")
        assert report.n_imported == expected.imported
        assert [p.line for p in report.problems] == list(expected.lines)
        assert [p.location for p in report.problems] == [f"line {n}" for n in expected.lines]
        assert expected.says in report.problems[0].reason
        assert all(len(p.raw) <= 300 for p in report.problems)  # a preview, never the row
        rows = stored(db)
        assert len(rows) == expected.imported
        assert not {row["source_line"] for row in rows} & set(expected.lines)
        for row in rows:  # what reached the database is JSON any strict reader takes
            for column in ("messages_json", "raw_json", "tools_json"):
                if row[column] is not None:
                    json.loads(row[column], parse_constant=_no_constants)
                    row[column].encode("utf-8")

    else:
        report = run_import(path, on_error="abort")
        assert (report.n_imported, report.problems) == (expected.rows, [])
        written = rows_as_written(path)
        assert [json.loads(r["messages_json"]) for r in stored(db)] == [chat_of(r) for r in written]
        assert [json.loads(r["raw_json"]) for r in stored(db)] == written
        set_status_where(db, "hostile", "accepted", "tester")
        out = tmp_path / "export.jsonl"
        assert export_dataset(db, "hostile", out) == expected.rows
        # Split on "\n" only: JSON keeps U+2028 as it is, and str.splitlines() would cut there.
        lines = out.read_text(encoding="utf-8").split("\n")
        assert lines.pop() == ""
        exported = [json.loads(line) for line in lines]
        assert exported == [{"messages": chat_of(r)} for r in written]


def _no_constants(name: str):
    raise AssertionError(f"{name} stored in the database")


@pytest.mark.parametrize(
    ("source", "says"),
    [("image_renamed.csv", "a binary file"), ("archive.zip", "a zip archive"),
     ("gzip_renamed.jsonl", "a gzip archive"), ("utf16.jsonl", "UTF-16 text"),
     ("invalid_utf8.csv", "line 3 is not valid UTF-8")],
)  # fmt: skip
def test_choosing_a_broken_csv_says_why_before_the_import(source, says, tmp_path):
    """The column-mapping form reads a CSV's header as soon as the file is chosen."""
    path = tmp_path / "chosen.csv"
    path.write_bytes((CORPUS / source).read_bytes())
    with pytest.raises(ValidationError, match=f"^chosen.csv: .*{says}"):
        csv_header(path)


# --- every file as an Evaluate / Arena prompt file ----------------------------------------


@pytest.mark.parametrize("name", UPLOADS)
def test_prompt_file(name):
    path = CORPUS / name
    expected = CASES[name][1]
    if isinstance(expected, Refused):
        with pytest.raises(ValidationError) as raised:
            prompts_from_file(path, name)
        assert_names_the_file(str(raised.value), name, expected.says)
        return
    prompts, label = prompts_from_file(path, name)
    assert label == f"uploaded {name}"
    written = rows_as_written(path)
    assert len(prompts) == expected.rows == len(written)
    assert [p.messages for p in prompts] == [chat_of(r)[:1] for r in written]
    assert [p.reference for p in prompts] == [r["completion"] for r in written]


# --- big inputs, made at run time -------------------------------------------------------------


def _fifty_megabytes(path: Path, head: str, tail: str) -> Path:
    """One line: `head`, filler words up to 50 MB, `tail`; written in pieces."""
    filler = "word " * 200_000  # 1 MB
    with path.open("w", encoding="utf-8") as handle:
        handle.write(head)
        for _ in range(50):
            handle.write(filler)
        handle.write(tail)
    return path


def test_a_fifty_megabyte_line_is_refused_by_length_without_a_crash(db, run_import, tmp_path):
    path = _fifty_megabytes(tmp_path / "huge.jsonl", '{"prompt": "', '", "completion": "ok"}')
    assert path.stat().st_size > 50_000_000
    before = table_counts(db)

    with pytest.raises(ImportRejected) as raised:
        run_import(path)

    assert_names_the_file(str(raised.value), "huge.jsonl", "line 1: longer than the max length")
    (problem,) = raised.value.report.problems
    assert problem.line == 1 and len(problem.raw) <= 300
    assert table_counts(db) == before
    with pytest.raises(ValidationError, match=r"^huge.jsonl: prompt 1 is 50,000,\d{3} char"):
        prompts_from_file(path)


def test_a_fifty_megabyte_line_of_garbage_is_an_invalid_row(db, run_import, tmp_path):
    path = _fifty_megabytes(tmp_path / "garbage.jsonl", "<<<", ">>>")
    before = table_counts(db)
    with pytest.raises(ValidationError) as raised:
        run_import(path)
    assert_names_the_file(str(raised.value), "garbage.jsonl", "line 1: invalid JSON")
    assert len(str(raised.value)) < 1000  # the message doesn't carry the line
    assert table_counts(db) == before


def test_a_fifty_megabyte_csv_cell_is_refused_by_length(db, run_import, tmp_path):
    path = _fifty_megabytes(tmp_path / "huge.csv", 'prompt,completion\nshort,ok\n"', '",ok\n')
    before = table_counts(db)
    report = run_import(path)
    assert report.n_imported == 1
    assert [(p.line, p.reason[:26]) for p in report.problems] == [
        (3, "longer than the max length")]  # fmt: skip
    assert table_counts(db)["examples"] == before["examples"] + 1


@pytest.mark.parametrize("kind", ["jsonl", "json"])
def test_rows_nested_up_to_the_parsers_limit_are_stored_or_refused_never_a_crash(
    kind, db, run_import, tmp_path
):
    """Around the depth where Python's JSON parser gives up (it depends on the stack in use),
    each row is either imported whole or refused as nested too deeply."""
    limit = next(d for d in range(900, 1100) if not _parses("[" * d + "]" * d))
    outcomes = set()
    for depth in range(limit - 30, limit + 2):
        nested = "[" * depth + "]" * depth
        row = f'{{"prompt": "How deep?", "completion": "{depth}", "extra": {nested}}}'
        path = tmp_path / f"deep{depth}.{kind}"
        path.write_text(row + "\n" if kind == "jsonl" else f"[{row}]", encoding="utf-8")
        before = table_counts(db)
        try:
            report = run_import(path, f"deep{depth}")
        except ValidationError as exc:
            assert "nested too deeply" in str(exc)
            assert table_counts(db) == before
            outcomes.add("refused")
            continue
        assert report.n_imported == 1
        (stored_row,) = stored(db, f"deep{depth}")
        assert stored_row["raw_json"].count("[") == depth
        outcomes.add("stored")
    assert outcomes == {"stored", "refused"}


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except RecursionError:
        return False
    return True


def test_long_rows_are_tokenized_in_batches_of_bounded_size(db, count_tokens, tmp_path):
    """Tokenizing holds a few hundred bytes per character: long rows go a few at a time."""
    batches = []

    def counting(conversations):
        batches.append([sum(len(m["content"]) for m in c) for c in conversations])
        return count_tokens(conversations)

    rows = [pc(f"{i} " + "word " * 120_000, "ok") for i in range(3)]  # 600,000 characters
    path = write_jsonl(tmp_path / "long.jsonl", rows + [pc("short", "ok")])
    report = import_file(db, path, "long", count_tokens=counting, max_tokens=200_000)
    assert report.n_imported == 4
    assert [len(batch) for batch in batches] == [1, 1, 2]
    assert all(sum(batch) <= 1_000_000 for batch in batches)


# --- typed field values -----------------------------------------------------------------------


@pytest.mark.parametrize("name", FIELDS["dataset_names"])
def test_hostile_dataset_names_are_refused(name, db, run_import, tmp_path):
    path = write_jsonl(tmp_path / "ok.jsonl", [pc("What is 2 + 2?", "4.")])
    before = table_counts(db)
    with pytest.raises(ValidationError, match="dataset name"):
        run_import(path, name)
    assert table_counts(db) == before
    with pytest.raises(ValidationError, match="dataset name"):
        store.check_dataset_name(name)


@pytest.mark.parametrize("file_name", FIELDS["file_names"])
def test_upload_names_are_cut_to_their_last_part(file_name, db, run_import, tmp_path):
    path = write_jsonl(tmp_path / "upload.jsonl", [pc("What is 2 + 2?", "4.")])
    report = run_import(path, file_name=file_name)
    assert report.file_name == Path(file_name).name
    (row,) = db.query("SELECT file_name FROM imports")
    assert row["file_name"] == Path(file_name).name and "/" not in row["file_name"]
    prompts, label = prompts_from_file(path, file_name)
    assert label == f"uploaded {Path(file_name).name}"


def test_searches_are_literal_text_never_sql(db, run_import):
    for name in ("sql_strings.jsonl", "html_script.jsonl", "rtl_overrides.jsonl"):
        run_import(CORPUS / name)
    dataset = store.get_dataset(db, "hostile")
    texts = {row["id"]: [m["content"].lower() for m in json.loads(row["messages_json"])]
             for row in stored(db)}  # fmt: skip
    before = table_counts(db)
    tables = sorted(r["name"] for r in db.query("SELECT name FROM sqlite_master"))
    for search in FIELDS["search_strings"]:
        found, total = store.query_examples(db, dataset.id, search=search, limit=100)
        expected = [i for i, contents in texts.items()
                    if any(search.lower() in content for content in contents)]  # fmt: skip
        assert [e.id for e in found] == expected, search
        assert total == len(expected)
        assert store.matching_example_ids(db, dataset.id, search=search) == expected
    assert table_counts(db) == before
    assert sorted(r["name"] for r in db.query("SELECT name FROM sqlite_master")) == tables
    # The injection strings are found as the text they are, where they are.
    (hit,), _ = store.query_examples(db, dataset.id, search="'; DROP TABLE examples; --")
    assert json.loads(stored(db)[0]["messages_json"])[1]["content"] == (
        "'; DROP TABLE examples; --"
    )
    assert hit.id == stored(db)[0]["id"]


# --- formulas: stored as written, neutralised in every CSV export ---------------------------


def _echo_prompt(model, messages, sampling):
    """An answer that is the prompt itself: the formula comes back in the answer column."""
    yield messages[-1]["content"]


@pytest.mark.parametrize("name", ["formula_injection.csv", "formula_injection.jsonl"])
def test_formula_cells_are_kept_and_neutralised_in_csv_exports(name, home, tmp_path):
    services = arena_home(home)
    written = rows_as_written(CORPUS / name)
    formulas = {text for row in written for text in (row["prompt"], row["completion"])}
    assert all(text.startswith(FORMULA_STARTS) for text in formulas)
    prompts, label = prompts_from_file(CORPUS / name)

    with services.db() as db:
        create_run(db, services.served_base, name="formulas", prompts=prompts, source=label,
                   contestants=["base", "pirate"], user="admin")  # fmt: skip
    generate_all(services, chat=_echo_prompt)
    with services.db() as db:
        assert write_results(db, "formulas", tmp_path / "results.csv", "csv") == 8
        write_results(db, "formulas", tmp_path / "results.jsonl", "jsonl")
    results = list(csv.DictReader((tmp_path / "results.csv").open(encoding="utf-8", newline="")))
    for row, source in zip(results, [w for w in written for _ in range(2)], strict=True):
        assert row["answer"] == "'" + source["prompt"]
        assert row["reference"] == "'" + source["completion"]
    jsonl = [json.loads(line) for line in (tmp_path / "results.jsonl").open(encoding="utf-8")]
    assert {r["answer"] for r in jsonl} == {r["prompt"] for r in written}  # JSONL keeps them

    with services.db() as db:
        session = create_session(
            db, services.served_base, name="formulas", prompts=prompts, source=label,
            contestants=["base", "pirate"], sampling=Sampling(max_new_tokens=16), user="admin",
        )  # fmt: skip
    generate_session_answers(services.db, _echo_prompt, workers=1)
    with services.db() as db:
        while (battle_id := next_battle(db, session.id, reviewer("rita"))) is not None:
            record_vote(db, battle_id, "rita", "tie", comment=written[0]["completion"])
        assert write_battles(db, tmp_path / "battles.csv", "csv") == 4
        n_battles = len(list(arena_store.voted_battles(db, session.id)))
    battles = list(csv.DictReader((tmp_path / "battles.csv").open(encoding="utf-8", newline="")))
    assert len(battles) == n_battles == 4
    prompts_text = {r["prompt"] for r in written}
    assert {b["answer_a"] for b in battles} == {"'" + text for text in prompts_text}
    assert {b["answer_b"] for b in battles} == {"'" + text for text in prompts_text}
    assert {b["comment"] for b in battles} == {"'" + written[0]["completion"]}
    for cell in (c for b in battles for c in b.values()):
        assert not cell.startswith(FORMULA_STARTS), cell
