"""Reviewing preference pairs in a real browser (Playwright driving Debian's Chromium) against
the real app in a subprocess: the prompt in the chat, the two answers side by side under
"Chosen" and "Rejected", the key s swapping them (stored, with who did it), the Swap button
shown for pairs only. Screenshots go to test-output/screenshots/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.browser import expect, shot
from tests.live_app import LiveApp, running_app

pytestmark = pytest.mark.e2e

DATASET = "browser-pairs"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path):
    with running_app(tmp_path_factory.mktemp("live") / "home", models_dir) as live:
        yield live


def test_the_s_key_swaps_the_answers_shown_side_by_side(app: LiveApp, page, tmp_path: Path):
    source = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
            {"prompt": "Two plus two?", "chosen": "Four.", "rejected": "Five."}]  # fmt: skip
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    page.goto(app.url)
    page.locator("#ft-import-file input[type=file]").set_input_files(str(source))
    page.locator("#ft-import-dataset textarea").fill(DATASET)
    page.locator("#ft-import-button").click()
    expect(page.locator("#ft-import-report")).to_contain_text("2 of 2 rows imported")

    answers = page.locator("#ft-answers .ft-answer")
    expect(answers).to_have_count(2)
    expect(answers.nth(0)).to_have_text("ChosenParis.")
    expect(answers.nth(1)).to_have_text("RejectedLyon.")
    expect(page.locator("#ft-conversation")).not_to_contain_text("Paris.")
    expect(page.locator("#ft-edit-rejected textarea")).to_have_value("Lyon.")
    expect(page.locator("#ft-swap")).to_be_visible()
    expect(page.locator("#ft-label-good")).to_be_hidden()
    shot(page, "pairs-01-side-by-side", page.locator("#ft-example-header").locator("../.."))

    page.locator("h1", has_text="ftapp").click()  # no textbox has the focus
    page.keyboard.press("s")
    expect(answers.nth(0)).to_have_text("ChosenLyon.")
    expect(answers.nth(1)).to_have_text("RejectedParis.")
    (row,) = app.query("SELECT id, messages_json, rejected_json FROM examples ORDER BY id LIMIT 1")
    assert json.loads(row["messages_json"])[-1]["content"] == "Lyon."
    assert json.loads(row["rejected_json"]) == [{"role": "assistant", "content": "Paris."}]
    events = app.query("SELECT action, user_name FROM example_events WHERE example_id = ?",
                       [row["id"]])  # fmt: skip
    assert events == [{"action": "swap", "user_name": "admin"}]
    expect(page.locator("#ft-position")).to_have_text("1 of 2 matching")
    shot(page, "pairs-02-swapped")
