"""Hostile and broken inputs against the real app in a subprocess (gradio_client calls what the
page's buttons call): files of the corpus (tests/fixtures/bad_inputs/) uploaded to the Data
tab's import and as Evaluate / Arena prompt files, and hostile field values (path-like names,
SQL-looking searches, a 200,000-character prompt). A refused input comes back as an error
naming the file and line, no table of the app's database changes, and the app still answers;
accepted hostile text is stored exactly and shown escaped. Echo backend, no worker: this is
about input handling, not generation.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.arena.conftest import running_arena_app
from tests.helpers import write_jsonl
from tests.live_app import LiveApp
from tests.test_bad_inputs import (
    CASES,
    CORPUS,
    FIELDS,
    Accepted,
    Refused,
    chat_of,
    rows_as_written,
)

pytestmark = pytest.mark.slow

AUTO = "(use the file's column names)"
REVIEW_VIEW = ("progress", "table", "position", "header", "conversation", "answers", "system",
               "prompt", "answer", "rejected", "tags", "note", "history")  # fmt: skip
LONG_PROMPT = "word " * 39_999 + "word."  # 200,000 characters
REFUSED_UPLOADS = ["zip_renamed.jsonl", "utf16.jsonl", "invalid_utf8.csv", "truncated.json",
                   "image_renamed.jsonl", "empty.json", "wrong_schema.jsonl",
                   "lone_surrogate.jsonl", "huge_integer_cell.csv"]  # fmt: skip
REFUSED_PROMPT_FILES = ["truncated.jsonl", "lone_surrogate.jsonl", "long_prompt.jsonl",
                        "image_renamed.jsonl", "wrong_schema.jsonl", "nested_types.jsonl",
                        "nan_tools.jsonl"]  # fmt: skip
HOSTILE_TEXT = ["html_script.jsonl", "rtl_overrides.jsonl", "formula_injection.csv",
                "control_chars.jsonl"]  # fmt: skip


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path):
    with running_arena_app(tmp_path_factory.mktemp("hostile") / "home", models_dir) as live:
        yield live


@pytest.fixture
def client(app: LiveApp) -> Client:
    return Client(app.url, verbose=False)


def counts(app: LiveApp) -> dict[str, int]:
    """Rows in every table of the app's database."""
    names = [
        r["name"]
        for r in app.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {name: app.query(f'SELECT COUNT(*) AS n FROM "{name}"')[0]["n"] for name in names}


def assert_still_serving(app: LiveApp, client: Client) -> None:
    assert app.process.poll() is None, app.log_tail()
    listed = client.predict(None, api_name="/list_datasets")
    assert "choices" in listed


def upload(client: Client, path: Path, dataset: str, on_error: str = "skip") -> tuple:
    return client.predict(
        handle_file(str(path)), dataset, "auto", on_error, 2048, *[AUTO] * 6,
        api_name="/import_file",
    )  # fmt: skip


def start_eval(client: Client, name: str, path: Path) -> tuple:
    return client.predict(
        name, ["base", "pirate"], "an uploaded file", None, "test", handle_file(str(path)),
        ["exact_match"], "", [], None, "", "stdin", "", "", 0, 16, api_name="/eval_start",
    )  # fmt: skip


def start_session(client: Client, name: str, path: Path) -> str:
    return client.predict(
        name, 1, "", ["base", "pirate"], "an uploaded file", None, "test",
        handle_file(str(path)), "", 0.7, 0.95, 16, "", api_name="/arena_create_session",
    )  # fmt: skip


def review(client: Client, dataset: str, search: str = "") -> dict:
    client.predict(None, api_name="/list_datasets")  # the session learns the new dataset
    shown = client.predict(dataset, "all", "all", "", search, api_name="/review_open")
    return dict(zip(REVIEW_VIEW, shown, strict=True))


def assert_escaped(shown: str, text: str) -> None:
    """What a component that renders HTML got for `text`: no tag left, and exactly `text` once
    rendered (whether quotes are escaped too doesn't matter)."""
    assert "<" not in shown and ">" not in shown, shown
    assert html.unescape(shown) == text


def rows_of(table: dict) -> list[list]:
    """The rows of a Dataframe output (a plain value, or inside an update)."""
    return (table.get("value") or {}).get("data", []) if "__type__" in table else table["data"]


def text_of(content) -> str:
    """A Chatbot message's text (the client hands back a list of typed parts)."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def stored_messages(app: LiveApp, dataset: str) -> list[list[dict]]:
    rows = app.query(
        "SELECT e.messages_json FROM examples e JOIN datasets d ON d.id = e.dataset_id "
        "WHERE d.name = ? ORDER BY e.id",
        [dataset],
    )
    return [json.loads(row["messages_json"]) for row in rows]


# --- uploads to the Data tab ----------------------------------------------------------------


@pytest.mark.parametrize("name", REFUSED_UPLOADS)
def test_a_refused_upload_names_the_file_and_changes_nothing(app, client, name):
    expected = CASES[name][0]
    says = expected.says if isinstance(expected, Refused) else f"line {expected.lines[0]}: "
    before = counts(app)

    if isinstance(expected, Refused):
        with pytest.raises(AppError) as raised:
            upload(client, CORPUS / name, "refused")
        message = str(raised.value)
    else:  # rows that can't be imported: with abort, a report that says so, and no rows
        report, problems, _ = upload(client, CORPUS / name, "refused", on_error="abort")
        message = html.unescape(report.replace("\\", ""))
        assert message.startswith("**Import failed.**")
        assert [row[0] for row in rows_of(problems)] == [
            f"line {n}" for n in expected.lines]  # fmt: skip

    assert name in message and says in message, message
    assert counts(app) == before
    assert_still_serving(app, client)


def test_bad_rows_are_skipped_or_abort_the_whole_file(app, client):
    name = "invalid_utf8.jsonl"
    before = counts(app)
    report, _, _ = upload(client, CORPUS / name, "utf8", on_error="abort")
    assert "Import failed" in report and counts(app) == before

    report, problems, _ = upload(client, CORPUS / name, "utf8", on_error="skip")
    assert "2 of 3 rows imported" in html.unescape(report.replace("\\", ""))
    assert [row[:2] for row in rows_of(problems)] == [["line 2", "not valid UTF-8 text"]]
    assert counts(app)["examples"] == before["examples"] + 2
    assert_still_serving(app, client)


@pytest.mark.parametrize("name", HOSTILE_TEXT)
def test_hostile_text_is_stored_exactly_and_shown_escaped(app, client, name):
    dataset = Path(name).stem.replace("_", "-")
    assert isinstance(CASES[name][0], Accepted)
    upload(client, CORPUS / name, dataset, on_error="abort")
    written = rows_as_written(CORPUS / name)
    assert stored_messages(app, dataset) == [chat_of(row) for row in written]

    view = review(client, dataset)
    first = written[0]
    # Text boxes show text as it is; the conversation (which renders HTML) gets it escaped.
    assert (view["prompt"], view["answer"]) == (first["prompt"], first["completion"])
    user, assistant = (text_of(m["content"]) for m in view["conversation"])
    assert_escaped(user, first["prompt"])
    assert_escaped(assistant, first["completion"])
    assert "<script" not in json.dumps(view["conversation"]) + view["header"]
    assert_still_serving(app, client)


def test_hostile_text_in_the_arena_and_the_playground_is_shown_escaped(app, client):
    for row in rows_as_written(CORPUS / "html_script.jsonl"):
        text = row["prompt"]
        battles = counts(app)["battles"]
        chat_a = Client(app.url, verbose=False).predict(text, api_name="/free_send")[2]
        assert_escaped(text_of(chat_a[0]["content"]), text)
        battle = app.query("SELECT * FROM battles ORDER BY id DESC LIMIT 1")[0]
        assert counts(app)["battles"] == battles + 1
        assert json.loads(battle["conversation_a_json"])[0] == {"role": "user", "content": text}

        playground = Client(app.url, verbose=False)  # a new conversation
        chat, _ = playground.predict("base", "", 0, 1, 16, None, text, api_name="/chat")
        assert_escaped(text_of(chat[0]["content"]), text)
        assert "<script" not in json.dumps(chat_a) + json.dumps(chat)
    assert_still_serving(app, client)


# --- prompt files for Evaluate and the Arena ------------------------------------------------


@pytest.mark.parametrize("name", REFUSED_PROMPT_FILES)
def test_a_refused_prompt_file_names_the_file_and_line_and_changes_nothing(app, client, name):
    expected = CASES[name][1]
    assert isinstance(expected, Refused)
    before = counts(app)
    with pytest.raises(AppError) as raised:
        start_eval(client, "from a bad file", CORPUS / name)
    assert str(raised.value).startswith(name) and expected.says in str(raised.value)
    with pytest.raises(AppError) as raised:
        start_session(client, "from a bad file", CORPUS / name)
    assert str(raised.value).startswith(name) and expected.says in str(raised.value)
    assert counts(app) == before
    assert_still_serving(app, client)


def test_an_evaluation_of_hostile_prompts_shows_them_escaped(app, client):
    message, run_name = start_eval(client, "hostile prompts", CORPUS / "html_script.jsonl")
    assert run_name == "hostile prompts"
    for _ in range(300):  # a guard against hanging, not a speed check
        status = app.query("SELECT status FROM eval_runs WHERE name = ?", [run_name])[0]["status"]
        if status not in ("generating", "scoring"):
            break
        time.sleep(0.2)
    assert status == "done", app.log_tail()
    for position, row in enumerate(rows_as_written(CORPUS / "html_script.jsonl"), start=1):
        shown = client.predict(run_name, position, api_name="/eval_example")
        for text in (row["prompt"], row["completion"]):  # in the page's HTML, as text
            assert html.escape(text) in shown or html.escape(text, quote=False) in shown
            assert "<" not in text or text not in shown
    assert "<script" not in "".join(
        client.predict(run_name, p, api_name="/eval_example") for p in (1, 2, 3)
    )
    assert_still_serving(app, client)


# --- typed field values -----------------------------------------------------------------------


def test_path_like_and_hostile_names_are_refused(app, client, tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", [{"prompt": "What is 2 + 2?", "completion": "4."}])
    before = counts(app)
    for name in FIELDS["dataset_names"]:
        with pytest.raises(AppError, match="dataset name"):
            upload(client, good, name)
    for name in ("../../etc/passwd", "..", "a/b"):
        with pytest.raises(AppError, match="run name"):
            start_eval(client, name, good)
        with pytest.raises(AppError, match="session name"):
            start_session(client, name, good)
    assert counts(app) == before
    assert not (app.home.parent / "etc").exists()
    assert_still_serving(app, client)


def test_an_upload_named_like_html_is_kept_as_text(app, client, tmp_path):
    name = FIELDS["file_names"][3]
    assert name.startswith("<img")
    path = write_jsonl(tmp_path / name, [{"prompt": "What is 2 + 2?", "completion": "4."}])
    report, _, _ = upload(client, path, "html-named", on_error="abort")
    assert "<img" not in report and "1 of 1 row imported" in report
    (row,) = app.query("SELECT i.file_name FROM imports i JOIN datasets d "
                       "ON d.id = i.dataset_id WHERE d.name = 'html-named'")  # fmt: skip
    # Gradio's upload drops '<' and '>' from file names: no tag reaches ftapp or a message.
    assert row["file_name"].endswith(".jsonl") and "onerror" in row["file_name"]
    assert "<" not in row["file_name"] and ">" not in row["file_name"]

    empty = tmp_path / "refused" / name
    empty.parent.mkdir()
    empty.write_text("")
    before = counts(app)
    with pytest.raises(AppError) as raised:
        upload(client, empty, "html-named")
    assert str(raised.value) == f"{row['file_name']}: the file has no rows"
    assert counts(app) == before
    assert_still_serving(app, client)


def test_sql_looking_searches_find_text_and_change_nothing(app, client):
    upload(client, CORPUS / "sql_strings.jsonl", "sql", on_error="abort")
    texts = {row["id"]: json.loads(row["messages_json"]) for row in app.query(
        "SELECT e.id, e.messages_json FROM examples e JOIN datasets d ON d.id = e.dataset_id "
        "WHERE d.name = 'sql' ORDER BY e.id")}  # fmt: skip
    before = counts(app)
    for search in FIELDS["search_strings"]:
        view = review(client, "sql", search)
        expected = [i for i, messages in texts.items()
                    if any(search.lower() in m["content"].lower() for m in messages)]  # fmt: skip
        listed = [row[1] for row in rows_of(view["table"])]
        assert listed == expected, search
        if expected:
            assert view["position"] == f"1 of {len(expected)} matching"
        else:
            assert view["position"] == "No example matches the filters."
    assert counts(app) == before
    assert_still_serving(app, client)


def test_a_two_hundred_thousand_character_prompt_is_refused_everywhere(app, client, tmp_path):
    assert len(LONG_PROMPT) == 200_000
    prompts = write_jsonl(tmp_path / "long.jsonl", [{"prompt": LONG_PROMPT}])
    before = counts(app)
    with pytest.raises(AppError, match="200,000 characters; the limit is 20,000"):
        Client(app.url, verbose=False).predict(LONG_PROMPT, api_name="/free_send")
    with pytest.raises(AppError, match="message 1 is 200,000 characters; the limit is 50,000"):
        client.predict("base", "", 0, 1, 16, None, LONG_PROMPT, api_name="/chat")
    with pytest.raises(AppError, match=r"^long.jsonl: prompt 1 is 200,000 characters"):
        start_eval(client, "long", prompts)
    with pytest.raises(AppError, match=r"^long.jsonl: prompt 1 is 200,000 characters"):
        start_session(client, "long", prompts)
    assert counts(app) == before
    assert_still_serving(app, client)
