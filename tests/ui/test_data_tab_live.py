"""The Data tab's API, against the real app in a subprocess: gradio_client calls the same
endpoints the page's buttons call, and the assertions read the returned values and the app's
SQLite file directly (statuses, the audit trail with user names, versions, exported files).

Gradio keeps `gr.State` (the current position and example) per client session, so one
Client walks through the review like one browser tab does. Dropdown choices are per session
too: a session learns about datasets created after the app started from /list_datasets,
as the page's Refresh button does.
"""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.helpers import pc, write_jsonl
from tests.live_app import LiveApp, running_app

pytestmark = pytest.mark.slow

NO_FILTERS = ("all", "all", "", "")  # status, split, tag, search
VIEW = ("progress", "table", "position", "header", "conversation", "answers", "system", "prompt",
        "answer", "rejected", "tags", "note", "history")  # fmt: skip
STATS = ("stats", "histogram", "versions", "export_what")
AUTO = "(use the file's column names)"
DATA_TABLES = ("datasets", "imports", "examples", "example_events", "dataset_versions",
               "version_examples")  # fmt: skip


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path):
    with running_app(tmp_path_factory.mktemp("live") / "home", models_dir) as live:
        yield live


@pytest.fixture
def client(app: LiveApp, tmp_path: Path) -> Client:
    return Client(app.url, verbose=False, download_files=str(tmp_path / "downloads"))


def plain(markdown: str) -> str:
    """The text a Markdown value shows (the app escapes user text in it)."""
    return html.unescape(re.sub(r"\\(.)", r"\1", markdown))


def view_of(result: tuple) -> dict:
    assert len(result) == len(VIEW), result
    return dict(zip(VIEW, result, strict=True))


def stats_of(result: tuple) -> dict:
    assert len(result) == len(STATS), result
    return dict(zip(STATS, result, strict=True))


def rows_of(table: dict) -> list[list]:
    """The rows of a Dataframe output (a plain value, or inside an update)."""
    return (table.get("value") or {}).get("data", []) if "__type__" in table else table["data"]


def import_jsonl(client: Client, path: Path, dataset: str, on_error: str = "skip") -> tuple:
    return client.predict(
        handle_file(str(path)), dataset, "auto", on_error, 2048, *[AUTO] * 6,
        api_name="/import_file",
    )  # fmt: skip


def open_dataset(client: Client, name: str) -> dict:
    listed = client.predict(None, api_name="/list_datasets")
    assert [name, name] in listed["choices"]
    return view_of(client.predict(name, *NO_FILTERS, api_name="/review_open"))


def counts(app: LiveApp) -> dict[str, int]:
    return {t: app.query(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"] for t in DATA_TABLES}


def dataset_examples(app: LiveApp, name: str) -> list[dict]:
    return app.query(
        "SELECT e.* FROM examples e JOIN datasets d ON d.id = e.dataset_id "
        "WHERE d.name = ? ORDER BY e.id",
        [name],
    )


def events_of(app: LiveApp, example_id: int) -> list[dict]:
    return app.query(
        "SELECT action, user_name, detail_json FROM example_events WHERE example_id = ? "
        "ORDER BY id",
        [example_id],
    )


def test_import_review_split_freeze_export(app: LiveApp, client: Client, tmp_path: Path):
    name = "support"
    source = write_jsonl(
        tmp_path / "support.jsonl",
        [
            pc("How do I reset my password?", "Use the 'Forgot password' link."),
            pc("Where is my invoice?", "Under Billing → Invoices."),
            '{"prompt": "broken", ',  # line 3: not JSON
            pc("Can I change my plan?", "Yes, any time, from Settings."),
            {"prompt": "no answer here"},  # line 5: no completion
            pc("Do you ship abroad?", "We ship to 40 countries."),
            pc("How do I reset my password?", "Use the 'Forgot password' link."),  # dup of 1
            pc("Is there a free trial?", "Yes, 14 days."),
            pc("How do I cancel?", "Settings → Plan → Cancel."),
        ],
    )

    report, problems, rejects = import_jsonl(client, source, name)
    report = plain(report)

    assert "6 of 9 rows imported into 'support'" in report
    assert "2 rejected" in report
    assert "1 exact duplicate skipped" in report
    listed = rows_of(problems)
    assert [row[0] for row in listed] == ["line 3", "line 5", "line 7"]
    assert "invalid JSON" in listed[0][1]
    assert "completion" in listed[1][1]
    assert "duplicate of line 1" in listed[2][1]
    rejected_lines = Path(rejects["value"]).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["line"] for line in rejected_lines] == [3, 5]

    examples = dataset_examples(app, name)
    assert [e["source_line"] for e in examples] == [1, 2, 4, 6, 8, 9]
    assert {e["status"] for e in examples} == {"pending"}
    (imported,) = app.query(
        "SELECT i.* FROM imports i JOIN datasets d ON d.id = i.dataset_id WHERE d.name = ?", [name]
    )
    assert (imported["n_rows"], imported["n_imported"], imported["n_rejected"],
            imported["n_duplicates"]) == (9, 6, 2, 1)  # fmt: skip
    assert imported["created_by"] == "admin"
    ids = [e["id"] for e in examples]

    # Open the dataset: the first example is shown.
    view = open_dataset(client, name)
    assert view["position"] == "1 of 6 matching"
    assert f"Example #{ids[0]}" in view["header"]
    assert view["prompt"] == "How do I reset my password?"
    assert len(rows_of(view["table"])) == 6
    assert "Reviewed 0 of 6" in view["progress"]

    # Accept it: stored with who and when, and the view moves on to the next example.
    view = view_of(client.predict(name, *NO_FILTERS, api_name="/review_accept"))
    first = dataset_examples(app, name)[0]
    assert (first["status"], first["reviewed_by"]) == ("accepted", "admin")
    assert first["reviewed_at"]
    events = [(e["action"], e["user_name"], json.loads(e["detail_json"]))
              for e in events_of(app, ids[0])]  # fmt: skip
    assert events == [("accepted", "admin", {"from": "pending"})]
    assert view["position"] == "2 of 6 matching"
    assert f"Example #{ids[1]}" in view["header"]
    assert "Reviewed 1 of 6" in view["progress"]

    # Edit the second one's answer, tag it and annotate it.
    view = view_of(client.predict(
        name, *NO_FILTERS, "", view["prompt"], "Billing → Invoices, top right.",
        "billing, needs-check", "answer shortened", api_name="/review_save",
    ))  # fmt: skip
    assert view["answer"] == "Billing → Invoices, top right."
    assert view["tags"] == "billing, needs-check"
    assert view["note"] == "answer shortened"
    assert "edited by admin" in view["header"]
    assert [row[2] for row in rows_of(view["history"])] == ["edit", "tags", "note"]
    second = dataset_examples(app, name)[1]
    assert json.loads(second["messages_json"])[-1]["content"] == "Billing → Invoices, top right."
    assert json.loads(second["original_messages_json"])[-1]["content"] == (
        "Under Billing → Invoices."
    )
    assert json.loads(second["tags_json"]) == ["billing", "needs-check"]
    assert second["note"] == "answer shortened"
    assert [(e["action"], e["user_name"]) for e in events_of(app, ids[1])] == [
        ("edit", "admin"), ("tags", "admin"), ("note", "admin")
    ]  # fmt: skip

    # Revert the text; tags and note stay.
    view = view_of(client.predict(name, *NO_FILTERS, api_name="/review_revert"))
    assert view["answer"] == "Under Billing → Invoices."
    second = dataset_examples(app, name)[1]
    assert second["messages_json"] == second["original_messages_json"]
    assert json.loads(second["tags_json"]) == ["billing", "needs-check"]
    assert [e["action"] for e in events_of(app, ids[1])] == ["edit", "tags", "note", "edit"]

    # A save with a bad tag changes nothing, not even the valid text edit beside it.
    with pytest.raises(AppError, match="tag"):
        client.predict(
            name, *NO_FILTERS, "", view["prompt"], "A new answer.", "ok, " + "x" * 60, "",
            api_name="/review_save",
        )  # fmt: skip
    assert dataset_examples(app, name)[1] == second
    assert len(events_of(app, ids[1])) == 4

    # Next, reject the third; then accept every pending one at once.
    view = view_of(client.predict(name, *NO_FILTERS, api_name="/review_next"))
    assert f"Example #{ids[2]}" in view["header"]
    view_of(client.predict(name, *NO_FILTERS, api_name="/review_reject"))
    view = view_of(client.predict(name, "pending", "all", "", "", api_name="/bulk_accept"))
    assert view["position"] == "No example matches the filters."
    assert "5 accepted · 1 rejected · 0 pending" in view["progress"]
    statuses = [e["status"] for e in dataset_examples(app, name)]
    assert statuses == ["accepted", "accepted", "rejected", "accepted", "accepted", "accepted"]
    accepted_events = [
        (e["example_id"], e["user_name"])
        for e in app.query("SELECT * FROM example_events WHERE action = 'accepted' ORDER BY id")
        if e["example_id"] in ids
    ]
    assert sorted(accepted_events) == [(i, "admin") for i in ids if i != ids[2]]

    # Splits: 5 non-rejected examples at 60/20/20 → 3 / 1 / 1; the rejected one gets none.
    stats = stats_of(client.predict(name, 0.6, 0.2, 0.2, 7, api_name="/assign_splits"))
    assert "| train / validation / test / no split | 3 / 1 / 1 / 0 |" in stats["stats"]
    splits = {e["id"]: e["split"] for e in dataset_examples(app, name)}
    assert splits[ids[2]] is None
    assert sorted(s for s in splits.values() if s) == ["test", "train", "train", "train",
                                                       "validation"]  # fmt: skip

    # Freeze: one version of the 5 accepted examples, listed in the versions table.
    stats = stats_of(client.predict(name, "first cut", api_name="/freeze_version"))
    (row,) = rows_of(stats["versions"])
    assert row[:5] == ["v1", 5, 3, 1, 1] and row[7] == "admin"
    assert ["v1", "v1"] in stats["export_what"]["choices"]
    (version,) = app.query(
        "SELECT v.* FROM dataset_versions v JOIN datasets d ON d.id = v.dataset_id "
        "WHERE d.name = ?",
        [name],
    )
    assert (version["version"], version["n_examples"], version["n_train"],
            version["n_validation"], version["n_test"]) == (1, 5, 3, 1, 1)  # fmt: skip
    assert (version["note"], version["created_by"]) == ("first cut", "admin")
    assert row[5] == version["content_hash"][:12]
    frozen = app.query(
        "SELECT example_id, split, messages_json FROM version_examples WHERE version_id = ? "
        "ORDER BY position",
        [version["id"]],
    )
    assert [f["example_id"] for f in frozen] == [i for i in ids if i != ids[2]]

    # Freezing unchanged content makes no new version.
    stats = stats_of(client.predict(name, "again", api_name="/freeze_version"))
    assert len(rows_of(stats["versions"])) == 1
    assert counts(app)["dataset_versions"] == 1

    # Export the frozen version: exactly its rows, in the messages format.
    exported = client.predict(name, "v1", "messages", "all", api_name="/export_dataset")
    records = [json.loads(line) for line in Path(_path(exported)).read_text().splitlines()]
    assert records == [{"messages": json.loads(f["messages_json"])} for f in frozen]
    # And the train split of the current accepted examples as prompt/completion.
    exported = client.predict(name, "accepted examples now", "prompt_completion", "train",
                              api_name="/export_dataset")  # fmt: skip
    records = [json.loads(line) for line in Path(_path(exported)).read_text().splitlines()]
    train_ids = [i for i, s in splits.items() if s == "train"]
    by_id = {e["id"]: json.loads(e["messages_json"]) for e in dataset_examples(app, name)}
    assert records == [
        {"prompt": by_id[i][0]["content"], "completion": by_id[i][1]["content"]}
        for i in sorted(train_ids)
    ]


def test_abort_import_writes_nothing(app: LiveApp, client: Client, tmp_path: Path):
    source = write_jsonl(
        tmp_path / "strict.jsonl",
        [pc("one", "1"), pc("two", "2"), "not json at all", pc("four", "4"), {"<b>x</b>": 1}],
    )
    before = counts(app)

    markdown, problems, rejects = import_jsonl(client, source, "strict", on_error="abort")

    report = plain(markdown)
    assert report.startswith("**Import failed.**") and "nothing was imported" in report
    assert "2 of 5 rows are invalid" in report
    assert "line 3: invalid JSON" in report and "line 5: missing field" in report
    # The row's own text is shown as text, not as HTML.
    assert "(the row has <b>x</b>)" in report and "<b>" not in markdown
    assert [row[0] for row in rows_of(problems)] == ["line 3", "line 5"]
    assert counts(app) == before
    assert app.query("SELECT * FROM datasets WHERE name = 'strict'") == []


def test_unreadable_file_is_a_clear_error_and_writes_nothing(
    app: LiveApp, client: Client, tmp_path: Path
):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    before = counts(app)

    with pytest.raises(AppError) as raised:
        import_jsonl(client, empty, "empty")

    assert str(raised.value) == "empty.jsonl: the file has no rows"
    assert counts(app) == before
    with pytest.raises(AppError, match="dataset name"):
        import_jsonl(client, write_jsonl(tmp_path / "ok.jsonl", [pc("a", "b")]), "../etc")
    assert counts(app) == before
    assert app.process.poll() is None


def test_csv_with_a_column_mapping(app: LiveApp, client: Client, tmp_path: Path):
    source = tmp_path / "faq-export.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "question", "reply", "topic"])
        writer.writerow(["1", "What are your hours?", "9 to 5, Monday to Friday.", "general"])
        writer.writerow(["2", "Do you have a phone line?", "Yes: 555-0100.", "contact"])
        writer.writerow(["3", 'Quote "this", please', "Line one,\nline two.", "edge"])

    # Choosing the file offers its columns and a dataset name from the file name.
    name_update, *column_updates = client.predict(
        handle_file(str(source)), "", api_name="/import_columns"
    )
    assert name_update["value"] == "faq-export"
    # A name typed before choosing the file is kept.
    typed, *_ = client.predict(handle_file(str(source)), "faq", api_name="/import_columns")
    assert typed["value"] == "faq"
    offered = [choice[0] for choice in column_updates[0]["choices"]]
    assert offered == [AUTO, "id", "question", "reply", "topic"]

    columns = {"prompt": "question", "completion": "reply"}
    report, _, _ = client.predict(
        handle_file(str(source)), "faq", "auto", "skip", 2048,
        columns["prompt"], columns["completion"], AUTO, AUTO, AUTO, AUTO,
        api_name="/import_file",
    )  # fmt: skip

    assert "3 of 3 rows imported into 'faq' (csv, prompt_completion)" in plain(report)
    examples = dataset_examples(app, "faq")
    assert [json.loads(e["messages_json"]) for e in examples] == [
        [{"role": "user", "content": "What are your hours?"},
         {"role": "assistant", "content": "9 to 5, Monday to Friday."}],
        [{"role": "user", "content": "Do you have a phone line?"},
         {"role": "assistant", "content": "Yes: 555-0100."}],
        [{"role": "user", "content": 'Quote "this", please'},
         {"role": "assistant", "content": "Line one,\nline two."}],
    ]  # fmt: skip
    assert [e["source_line"] for e in examples] == [2, 3, 4]

    # Without the mapping the same file can't be read: the columns name no known format.
    with pytest.raises(AppError, match="can't tell the format"):
        import_jsonl(client, source, "faq-unmapped")
    assert app.query("SELECT * FROM datasets WHERE name = 'faq-unmapped'") == []


def _path(file_output) -> str:
    """A File output: the path, or an update holding it."""
    return file_output["value"] if isinstance(file_output, dict) else file_output
