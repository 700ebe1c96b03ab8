"""The review page's preference tools, against the real app in a subprocess: gradio_client
calls what the page's buttons call (Swap, the rejected answer's box under Save, Revert, the
Good and Bad buttons), and the assertions read the returned view and the app's SQLite file.
One Client walks the review like one browser tab (Gradio keeps the shown example per
session)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.helpers import pc, write_jsonl
from tests.live_app import LiveApp, running_app

pytestmark = pytest.mark.slow

NO_FILTERS = ("all", "all", "", "")  # status, split, tag, search
# What the review events return to an API caller (gr.State and layout blocks are left out).
VIEW = ("progress", "table", "position", "header", "conversation", "answers", "system",
        "prompt", "answer", "rejected", "tags", "note", "history")  # fmt: skip
AUTO = "(use the file's column names)"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path):
    with running_app(tmp_path_factory.mktemp("prefs") / "home", models_dir) as live:
        yield live


@pytest.fixture
def client(app: LiveApp) -> Client:
    return Client(app.url, verbose=False)


def view_of(result: tuple) -> dict:
    assert len(result) == len(VIEW), result
    return dict(zip(VIEW, result, strict=True))


def columns(answers: str) -> list[str]:
    """The answer columns of the view, as text: ["Chosen Paris.", "Rejected Lyon."]."""
    cells = answers.split('<div class="ft-answer"')[1:]
    texts = []
    for cell in cells:
        inner = cell[cell.index(">") + 1 :]
        while "<" in inner:  # drop the tags, keep the (escaped) text
            start = inner.index("<")
            inner = inner[:start] + " " + inner[inner.index(">", start) + 1 :]
        texts.append(" ".join(inner.split()))
    return texts


def open_with(client: Client, tmp_path: Path, name: str, rows: list) -> dict:
    client.predict(handle_file(str(write_jsonl(tmp_path / f"{name}.jsonl", rows))), name, "auto",
                   "skip", 2048, *[AUTO] * 6, api_name="/import_file")  # fmt: skip
    client.predict(None, api_name="/list_datasets")
    return view_of(client.predict(name, *NO_FILTERS, api_name="/review_open"))


def example_row(app: LiveApp, name: str) -> dict:
    (row,) = app.query(
        "SELECT e.* FROM examples e JOIN datasets d ON d.id = e.dataset_id WHERE d.name = ? "
        "ORDER BY e.id LIMIT 1",
        [name],
    )
    return row


def answers_of(row: dict) -> tuple[str, str]:
    return (json.loads(row["messages_json"])[-1]["content"],
            json.loads(row["rejected_json"])[-1]["content"])  # fmt: skip


def actions(app: LiveApp, example_id: int) -> list[tuple[str, str]]:
    rows = app.query("SELECT action, user_name FROM example_events WHERE example_id = ? "
                     "ORDER BY id", [example_id])  # fmt: skip
    return [(r["action"], r["user_name"]) for r in rows]


def test_the_swap_button_swaps_and_the_rejected_answer_is_edited(app, client, tmp_path):
    rows = [{"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
            {"prompt": "Two plus two?", "chosen": "Four.", "rejected": "Five."}]  # fmt: skip
    view = open_with(client, tmp_path, "pairs", rows)
    assert columns(view["answers"]) == ["Chosen Paris.", "Rejected Lyon."]
    assert (view["answer"], view["rejected"]) == ("Paris.", "Lyon.")
    assert "pairs: 2" in view["progress"]
    example_id = example_row(app, "pairs")["id"]

    view = view_of(client.predict("pairs", *NO_FILTERS, api_name="/review_swap"))
    assert columns(view["answers"]) == ["Chosen Lyon.", "Rejected Paris."]
    assert (view["answer"], view["rejected"]) == ("Lyon.", "Paris.")
    assert view["position"] == "1 of 2 matching"  # the same example stays shown
    assert answers_of(example_row(app, "pairs")) == ("Lyon.", "Paris.")
    assert actions(app, example_id) == [("swap", "admin")]
    assert [row[2] for row in view["history"]["data"]] == ["swap"]

    view = view_of(client.predict("pairs", *NO_FILTERS, api_name="/review_swap"))
    assert columns(view["answers"]) == ["Chosen Paris.", "Rejected Lyon."]
    swapped_back = example_row(app, "pairs")
    assert answers_of(swapped_back) == ("Paris.", "Lyon.")
    assert swapped_back["messages_json"] == swapped_back["original_messages_json"]

    # The rejected answer's box saves with the rest (it is the last input of Save).
    view = view_of(client.predict("pairs", *NO_FILTERS, "", view["prompt"], view["answer"], "",
                                  "", "Marseille.", api_name="/review_save"))  # fmt: skip
    assert columns(view["answers"]) == ["Chosen Paris.", "Rejected Marseille."]
    assert answers_of(example_row(app, "pairs")) == ("Paris.", "Marseille.")
    with pytest.raises(AppError, match="the chosen and rejected answers are the same"):
        client.predict("pairs", *NO_FILTERS, "", view["prompt"], view["answer"], "", "",
                       "Paris.", api_name="/review_save")  # fmt: skip
    client.predict("pairs", *NO_FILTERS, api_name="/review_swap")
    view = view_of(client.predict("pairs", *NO_FILTERS, api_name="/review_revert"))
    assert columns(view["answers"]) == ["Chosen Paris.", "Rejected Lyon."]
    assert answers_of(example_row(app, "pairs")) == ("Paris.", "Lyon.")
    assert [a for a, _ in actions(app, example_id)] == ["swap", "swap", "edit", "swap", "edit"]


def test_swap_is_refused_on_a_conversation_with_the_reason(app, client, tmp_path):
    view = open_with(client, tmp_path, "chat", [pc("Hi?", "Hello.")])
    assert view["answers"] == "" and view["rejected"] == ""
    before = example_row(app, "chat")
    with pytest.raises(AppError, match="has no rejected answer to swap with: it is a "
                                       "conversation to imitate"):  # fmt: skip
        client.predict("chat", *NO_FILTERS, api_name="/review_swap")
    assert example_row(app, "chat") == before and actions(app, before["id"]) == []
    # The form's empty rejected box doesn't get in the way of saving a conversation.
    view = view_of(client.predict("chat", *NO_FILTERS, "", "Hi?", "Hello there.", "", "", "",
                                  api_name="/review_save"))  # fmt: skip
    assert view["answer"] == "Hello there."


def test_an_unpaired_answer_is_labelled_good_or_bad(app, client, tmp_path):
    row = {"prompt": "Capital of Spain?", "completion": "Madrid.", "label": False}
    view = open_with(client, tmp_path, "kto", [row])
    assert columns(view["answers"]) == ["Bad Madrid."]
    with pytest.raises(AppError, match="set its label instead"):
        client.predict("kto", *NO_FILTERS, api_name="/review_swap")
    view = view_of(client.predict("kto", *NO_FILTERS, api_name="/review_label_good"))
    assert columns(view["answers"]) == ["Good Madrid."]
    stored = example_row(app, "kto")
    assert stored["label"] == 1 and actions(app, stored["id"]) == [("label", "admin")]
