"""The Data tab in a real browser (Playwright driving Debian's Chromium) against the real app
in a subprocess: upload a file with a bad row, read the report, review with the keyboard,
split, freeze. Each step asserts on the page and on the app's SQLite file, and leaves a
screenshot in test-output/screenshots/ for a person to look at.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.browser import expect, shot
from tests.live_app import LiveApp, running_app

pytestmark = pytest.mark.e2e

ROWS = "[role=row]:has([role=gridcell])"  # a Dataframe's body rows (a grid of divs)
DATASET = "browser-demo"
HTML_PROMPT = "Format this: <b>bold</b>"
HTML_ANSWER = "Like this: <script>alert(1)</script> done"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path):
    with running_app(tmp_path_factory.mktemp("live") / "home", models_dir) as live:
        yield live


def focus_page_body(page) -> None:
    """Click a plain heading so no textbox has the focus (shortcuts are off while typing)."""
    page.locator("h1", has_text="ftapp").click()
    assert page.evaluate("document.activeElement === document.body")


def block_labelled(page, label: str):
    """The innermost component block whose label is exactly `label`."""
    return page.locator(".block").filter(has=page.get_by_text(label, exact=True)).last


def example_row(app: LiveApp, source_line: int) -> dict:
    (row,) = app.query(
        "SELECT e.* FROM examples e JOIN datasets d ON d.id = e.dataset_id "
        "WHERE d.name = ? AND e.source_line = ?",
        [DATASET, source_line],
    )
    return row


def test_import_review_with_keys_split_freeze(app: LiveApp, page, tmp_path: Path):
    source = tmp_path / "support-chats.jsonl"
    source.write_text(
        "\n".join([
            json.dumps({"prompt": "Say hello", "completion": "Hello!"}),
            json.dumps({"prompt": HTML_PROMPT, "completion": HTML_ANSWER}),
            '{"prompt": "this line is cut',
            json.dumps({"prompt": "What is 2+2?", "completion": "4"}),
            json.dumps({"prompt": "Name a colour", "completion": "Teal."}),
        ]) + "\n",
        encoding="utf-8",
    )  # fmt: skip

    # 1. Open the app.
    page.goto(app.url)
    expect(page.locator("#ft-import-button")).to_be_visible()
    shot(page, "01-start")

    # 2. Upload through the file input: the dataset name is proposed from the file name.
    page.locator("#ft-import-file input[type=file]").set_input_files(str(source))
    name_box = page.locator("#ft-import-dataset textarea")
    expect(name_box).to_have_value("support-chats")
    name_box.fill(DATASET)
    page.locator("#ft-import-button").click()
    report = page.locator("#ft-import-report")
    expect(report).to_contain_text(f"4 of 5 rows imported into '{DATASET}'")
    expect(report).to_contain_text("1 rejected")
    rejected_table = block_labelled(page, "Rejected rows")
    expect(rejected_table).to_contain_text("line 3")
    expect(rejected_table).to_contain_text("invalid JSON")
    assert len(app.query("SELECT id FROM examples")) == 4
    shot(page, "02-import-report", page.locator("#ft-import-button").locator(".."))

    # 3. The imported dataset is selected; after a reload it is still offered (the page
    # lists datasets on load, not as they were when the app started), and can be picked.
    expect(page.locator("#ft-dataset input")).to_have_value(DATASET)
    page.reload()
    expect(page.locator("#ft-import-button")).to_be_visible()
    page.locator("#ft-dataset input").click()
    page.locator("#ft-dataset [role=option]", has_text=DATASET).click()
    position = page.locator("#ft-position")
    header = page.locator("#ft-example-header")
    table = page.locator("#ft-review-table")
    expect(position).to_have_text("1 of 4 matching")
    expect(header).to_contain_text("Example #")
    expect(table.locator(ROWS)).to_have_count(4)
    expect(page.locator("#ft-review-progress")).to_contain_text("Reviewed 0 of 4")
    shot(page, "03-review", table)

    # 4. j / k move through the examples (focus on the page, not in a textbox).
    focus_page_body(page)
    page.keyboard.press("j")
    expect(position).to_have_text("2 of 4 matching")
    second = example_row(app, 2)
    expect(header).to_contain_text(f"Example #{second['id']} · pending")
    page.keyboard.press("k")
    expect(position).to_have_text("1 of 4 matching")
    page.keyboard.press("j")
    expect(position).to_have_text("2 of 4 matching")

    # The example with HTML in it is shown as text: nothing bold, no script, no alert.
    conversation = page.locator("#ft-conversation")
    expect(conversation).to_contain_text(HTML_PROMPT)
    expect(conversation).to_contain_text(HTML_ANSWER)
    assert conversation.locator("b, script").count() == 0
    expect(page.locator("#ft-edit-prompt textarea")).to_have_value(HTML_PROMPT)
    expect(table).to_contain_text(HTML_ANSWER)
    shot(page, "04-html-shown-literally", conversation)

    # 5. Typing "a" in a textbox is text, not a shortcut.
    search = page.locator("textarea[placeholder='text in prompts, answers, notes']")
    search.fill("a")
    search.press("a")
    expect(search).to_have_value("aa")
    assert example_row(app, 2)["status"] == "pending"
    search.fill("")

    # 6. "a" accepts the example shown, stores who did it, and moves on.
    focus_page_body(page)
    page.keyboard.press("a")
    expect(position).to_have_text("3 of 4 matching")
    expect(page.locator("#ft-review-progress")).to_contain_text("1 accepted")
    accepted = example_row(app, 2)
    assert (accepted["status"], accepted["reviewed_by"]) == ("accepted", "admin")
    events = app.query(
        "SELECT action, user_name FROM example_events WHERE example_id = ?", [accepted["id"]]
    )
    assert events == [{"action": "accepted", "user_name": "admin"}]
    assert [example_row(app, line)["status"] for line in (1, 4, 5)] == ["pending"] * 3
    # The statistics below follow the review.
    stats = page.locator("#ft-stats")
    expect(stats).to_contain_text("1 / 3 / 0")
    page.keyboard.press("k")
    expect(header).to_contain_text(f"Example #{accepted['id']} · accepted")
    expect(header).to_contain_text("reviewed by admin")
    expect(table.locator(ROWS).nth(1)).to_contain_text("accepted")
    shot(page, "05-accepted")

    # 7. Assign splits: every non-rejected example gets one; the review table shows it.
    page.locator("#ft-split").click()
    expect(stats).to_contain_text("4 / 0 / 0 / 0")
    expect(table.locator(ROWS).first).to_contain_text("train")
    assert {row["split"] for row in app.query("SELECT split FROM examples")} == {"train"}
    shot(page, "06-splits", stats)

    # 8. Freeze a version: it appears in the versions table and in the database.
    page.get_by_label("Version note").fill("first browser version")
    page.locator("#ft-freeze").click()
    versions = block_labelled(page, "Versions")
    expect(versions.locator(ROWS)).to_have_count(1)
    expect(versions).to_contain_text("v1")
    (version,) = app.query("SELECT * FROM dataset_versions")
    assert (version["version"], version["n_examples"], version["n_train"]) == (1, 1, 1)
    assert (version["note"], version["created_by"]) == ("first browser version", "admin")
    expect(versions).to_contain_text(version["content_hash"][:12])
    shot(page, "07-versions", versions)

    # 9. Import more into the dataset being reviewed: the review shows the new example.
    more = tmp_path / "more.jsonl"
    more.write_text(
        json.dumps({"prompt": "One more?", "completion": "Yes."}) + "\n"
        + json.dumps({"prompt": "Say hello", "completion": "Hello!"}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    page.locator("#ft-import-file input[type=file]").set_input_files(str(more))
    expect(name_box).to_have_value("more")  # proposed once the upload is in
    name_box.fill(DATASET)
    page.locator("#ft-import-button").click()
    expect(report).to_contain_text(f"1 of 2 rows imported into '{DATASET}'")
    expect(report).to_contain_text("1 exact duplicate skipped")
    expect(position).to_have_text("1 of 5 matching")
    expect(table.locator(ROWS)).to_have_count(5)
    expect(page.locator("#ft-review-progress")).to_contain_text("Reviewed 1 of 5")
    shot(page, "08-full-page")

    assert page.dialogs == []
    assert page.errors == []


def test_an_error_message_shows_what_was_typed_as_text(app: LiveApp, page, tmp_path: Path):
    """Core errors quote the user's input, and Gradio's message box renders HTML: the name
    must read as typed, not as markup (nothing bold, no image, no script run)."""
    source = tmp_path / "rows.jsonl"
    source.write_text(json.dumps({"prompt": "Hi", "completion": "Hello"}) + "\n", "utf-8")
    bad_name = "<b>bold</b><img src=x onerror=alert(1)>"
    page.goto(app.url)
    page.locator("#ft-import-file input[type=file]").set_input_files(str(source))
    name_box = page.locator("#ft-import-dataset textarea")
    expect(name_box).to_have_value("rows")  # the proposal would overwrite a name typed before
    name_box.fill(bad_name)
    page.locator("#ft-import-button").click()
    toast = page.get_by_test_id("toast-body")
    expect(toast).to_contain_text(f"dataset name '{bad_name}'")
    assert toast.locator("b, img").count() == 0
    assert app.query("SELECT name FROM datasets WHERE name LIKE '%bold%'") == []
    shot(page, "09-error-shown-as-text", toast)
    assert page.dialogs == [] and page.errors == []
