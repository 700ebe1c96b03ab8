"""The frictions a newcomer met on the README's tour, each checked in Chromium against the real
app (generating through the session's vLLM server, training with its own worker), so none
comes back:

- Playground: Enter sends and Shift+Enter starts a new line; every reply names its model;
  another model starts a new conversation; Stop is clickable only while a reply comes;
  two models compared side by side, labelled, follow-ups to each.
- Train: Queue job shows without scrolling; the validation curve appears while the job runs,
  before any reload; a job is picked by clicking its row; the log wraps.
- Arena: both panes open at the top, without share or clear icons; after the last battle the
  page says so and Next is off. Manage: the new-session form comes first, Close is off with
  no session, the newest version is preselected, the file upload shows only for a file, and
  a session too small to decide says so when it is created.
- Evaluate: the report appears by itself when the run is done, a verdict line first.
- Leaderboard: a model with too few votes shows "not enough votes", not an interval.
- Data: a reload reopens the dataset that was open.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftapp.arena.prompts import Prompt
from ftapp.arena.sessions import create_session
from ftapp.services import Services
from ftapp.serving.backend import Sampling
from tests.e2e.browser import (
    expect,
    fill_label,
    open_hyperparameters,
    open_tab,
    pick_many,
    shot,
    wait_for_row,
)
from tests.helpers import make_version
from tests.live_app import running_app
from tests.serving_fixtures import QUESTIONS, SECRET_QUESTION, SECRET_WORD, home_with_adapter

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SESSION = "Two battles"
LONG_PROMPT = "Write a long story, at least ten paragraphs, about a lighthouse keeper."
SECRET_ROWS = [{"prompt": q, "completion": f"The secret word is {SECRET_WORD}."} for q in QUESTIONS]
ENGINE_TIMEOUT_MS = 300_000  # guards against hanging, not speed checks
TRAIN_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def app(tmp_path_factory, secret_adapter, vllm_server, models_dir: Path, count_tokens):
    home = tmp_path_factory.mktemp("newcomer") / "home"
    settings = home_with_adapter(home, models_dir, secret_adapter)
    services = Services(settings)
    with services.db() as db:
        make_version(db, home, count_tokens, "other", n=6)
        make_version(db, home, count_tokens, "secrets", rows=SECRET_ROWS, ratios=(0.5, 0.25, 0.25))
        create_session(
            db, services.served_base, name=SESSION,
            prompts=[Prompt([{"role": "user", "content": SECRET_QUESTION}]),
                     Prompt([{"role": "user", "content": LONG_PROMPT}])],
            source="test", contestants=["base", "secret"],
            sampling=Sampling(temperature=0, max_new_tokens=200), user="t",
        )  # fmt: skip
    # Generation and training share the two cores: one thread each (DESIGN.md).
    extra = {"FTAPP_VLLM_URL": vllm_server.url, "FTAPP_SERVE_THREADS": "1"}
    with running_app(settings.home, models_dir, extra) as live:
        yield live


def bubbles(page, elem_id: str):
    return page.locator(f"#{elem_id} .message-row")


def test_playground_enter_labels_new_conversations_and_compare(app, page):
    page.goto(app.url)
    open_tab(page, "Playground")
    expect(page.locator("#ft-engine-status")).to_contain_text("ready", timeout=ENGINE_TIMEOUT_MS)
    page.get_by_role("spinbutton", name="number input for Temperature (0: greedy)").fill("0")
    page.get_by_label("Max new tokens").fill("16")
    stop = page.locator("#ft-play-stop")
    expect(stop).to_be_disabled()  # nothing is streaming

    # Shift+Enter starts a new line and sends nothing; Enter sends.
    box = page.locator("#ft-play-message textarea")
    box.fill("line one")
    box.press("Shift+Enter")
    box.type("line two")
    expect(box).to_have_value("line one\nline two")
    expect(bubbles(page, "ft-play-chat")).to_have_count(0)
    box.fill(SECRET_QUESTION)
    box.press("Enter")
    expect(bubbles(page, "ft-play-chat")).to_have_count(2)
    expect(box).to_have_value("")
    label = page.locator("#ft-play-chat .ft-reply-model")
    expect(label).to_have_text("base")  # the reply names the model that wrote it
    expect(stop).to_be_disabled(timeout=60_000)  # and Stop is off again once it is in
    shot(page, "newcomer-playground-labelled")

    # Another model: a new conversation, so the adapter is never shown base's answer as its own.
    field = page.locator("#ft-play-model input")
    field.fill("secret")
    field.press("Enter")
    expect(bubbles(page, "ft-play-chat")).to_have_count(0)
    box.fill(SECRET_QUESTION)
    box.press("Enter")
    expect(label).to_have_text("secret")
    expect(bubbles(page, "ft-play-chat").nth(1)).to_contain_text(SECRET_WORD)

    # Side by side: one message to two models, each pane labelled with its model.
    page.get_by_role("tab", name="Compare side by side").click()
    pick_many(page, "ft-cmp-models", ["base", "secret"])
    expect(page.locator("#ft-cmp-chat-1")).to_be_visible()
    expect(page.locator("#ft-cmp-chat-2")).to_be_hidden()
    compare_box = page.locator("#ft-cmp-message textarea")
    compare_box.fill(SECRET_QUESTION)
    compare_box.press("Enter")
    for pane, model in (("ft-cmp-chat-0", "base"), ("ft-cmp-chat-1", "secret")):
        expect(bubbles(page, pane)).to_have_count(2)
        expect(page.locator(f"#{pane} .ft-reply-model")).to_have_text(model)
        expect(page.locator(f"#{pane}")).to_contain_text(model)  # the pane's own label
    expect(bubbles(page, "ft-cmp-chat-1").nth(1)).to_contain_text(SECRET_WORD)
    expect(page.locator("#ft-cmp-stop")).to_be_disabled(timeout=60_000)
    compare_box.fill("Say it again.")
    compare_box.press("Enter")  # a follow-up goes to each model
    expect(bubbles(page, "ft-cmp-chat-0")).to_have_count(4)
    expect(bubbles(page, "ft-cmp-chat-1")).to_have_count(4)
    shot(page, "newcomer-playground-compare")
    assert not page.dialogs and not page.errors


def test_train_button_live_validation_curve_job_picker_and_log(app, page):
    page.goto(app.url)
    open_tab(page, "Train")
    queue = page.locator("#ft-queue")
    expect(queue).to_be_visible()
    box = queue.bounding_box()
    assert box["y"] + box["height"] <= page.viewport_size["height"], box  # no scrolling for it
    expect(page.locator("#ft-train-version input")).to_have_value("secrets@v1")  # the newest
    open_hyperparameters(page)
    for label, value in {
        "Max steps (0: use epochs)": "6",
        "Evaluate every N steps (0: off)": "2",
        "Save every N steps": "3",
        "Max length (tokens)": "64",
        "Gradient accumulation": "1",
        "CPU threads (0: all)": "1",
        "Learning rate": "0.003",
    }.items():
        fill_label(page, label, value)  # fmt: skip
    queue.click()
    status = page.locator("#ft-job-status")
    expect(status).to_contain_text("#1", timeout=30_000)
    # The validation loss is drawn while the job runs, with no reload of the page.
    wait_for_row(app, "SELECT COUNT(*) AS n FROM job_metrics WHERE kind = 'eval'", [],
                 lambda row: row["n"] >= 1, TRAIN_TIMEOUT_S, "no validation loss")  # fmt: skip
    plot = page.locator("#ft-loss-plot")
    expect(plot).to_contain_text("Loss: training and validation", timeout=30_000)
    expect(plot).to_contain_text("eval")  # in the legend, beside train
    job = wait_for_row(app, "SELECT * FROM jobs", [],
                       lambda row: row["status"] in ("succeeded", "failed"), TRAIN_TIMEOUT_S,
                       "the job did not finish")  # fmt: skip
    assert job["status"] == "succeeded", job["error"]
    expect(status).to_contain_text("succeeded", timeout=30_000)
    shot(page, "newcomer-train-live-curves")

    # A job is picked from the list: a click on its row.
    page.locator("#ft-jobs [role=row]:has([role=gridcell])").first.click()
    expect(page.locator("#ft-job-id input")).to_have_value(f"#1 {job['name']} (succeeded)")
    log = page.locator("#ft-job-log")
    expect(log).to_contain_text("step", timeout=30_000)
    overflow = log.evaluate(
        "(el) => [...el.querySelectorAll('*')].some((n) => n.scrollWidth > n.clientWidth + 1"
        " && getComputedStyle(n).overflowX !== 'visible')"
    )
    assert not overflow, "a log line runs off the right edge"
    assert not page.dialogs and not page.errors


def test_arena_panes_the_end_of_a_session_and_manage(app, page):
    wait_for_row(app, "SELECT status FROM eval_sessions WHERE name = ?", [SESSION],
                 lambda row: row["status"] == "open", 600, "the session did not open")  # fmt: skip
    page.goto(app.url)
    open_tab(page, "Arena")
    pane_a = page.locator("#ft-s-chat-a")
    for judged in range(2):
        expect(page.locator("#ft-s-vote-a")).to_be_enabled()
        expect(bubbles(page, "ft-s-chat-a")).to_have_count(2)
        # Each pane opens at its top, the question in view.
        page.wait_for_timeout(500)
        scrolled = pane_a.evaluate("(el) => Math.max(...[...el.querySelectorAll('*')]"
                                   ".map((n) => n.scrollTop))")  # fmt: skip
        assert scrolled == 0, f"pane A opened scrolled down by {scrolled}px"
        expect(pane_a.get_by_role("button", name="Share")).to_have_count(0)
        expect(pane_a.get_by_role("button", name="Clear")).to_have_count(0)
        if judged == 0:
            shot(page, "newcomer-arena-battle")
        page.locator("#ft-s-vote-tie").click()
        expect(page.locator("#ft-s-reveal")).to_contain_text("A was")
        page.locator("#ft-s-next").click()
    expect(page.locator("#ft-s-reveal")).to_contain_text("You judged every battle of this session")
    expect(page.locator("#ft-s-next")).to_be_disabled()
    shot(page, "newcomer-arena-done")

    page.get_by_role("tab", name="Manage").click()
    name = page.locator("#ft-m-session-name textarea, #ft-m-session-name input").first
    expect(name).to_be_visible()  # the main form is open, first
    expect(page.locator("#ft-m-close")).to_be_disabled()  # nothing chosen: nothing to close
    expect(page.locator("#ft-m-version input")).to_have_value("secrets@v1")
    expect(page.locator("#ft-m-file")).to_be_hidden()
    page.locator("#ft-m-source").get_by_label("an uploaded file").check()
    expect(page.locator("#ft-m-file")).to_be_visible()
    expect(page.locator("#ft-m-version")).to_be_hidden()
    page.locator("#ft-m-source").get_by_label("a dataset version's split").check()
    expect(page.locator("#ft-m-version")).to_be_visible()
    name.fill("Too small")
    pick_many(page, "ft-m-contestants", ["base", "secret"])
    page.locator("#ft-m-create").click()
    report = page.locator("#ft-m-report")
    expect(report).to_contain_text("Created session Too small")
    expect(report).to_contain_text("Too few to decide")
    expect(report).to_contain_text("takes about 85 votes")
    pick_many(page, "ft-m-session", [SESSION])
    expect(page.locator("#ft-m-close")).to_be_enabled()
    shot(page, "newcomer-arena-manage")

    open_tab(page, "Leaderboard")
    page.locator("#ft-lb-refresh").click()
    expect(page.locator("#ft-lb-ratings")).to_contain_text("not enough votes (2 of 10)")
    assert not page.dialogs and not page.errors


def test_the_evaluation_report_appears_by_itself(app, page):
    page.goto(app.url)
    open_tab(page, "Evaluate")
    page.locator("#ft-e-name input, #ft-e-name textarea").first.fill("first verdict")
    pick_many(page, "ft-e-contestants", ["base", "secret"])
    expect(page.locator("#ft-e-version input")).to_have_value("secrets@v1")
    expect(page.locator("#ft-e-file")).to_be_hidden()
    fill_label(page, "Max new tokens", "16")
    page.locator("#ft-e-start").click()
    expect(page.locator("#ft-e-message")).to_contain_text("Too few to decide")
    # No click on "Show report": it comes when the run is done, verdict first.
    summary = page.locator("#ft-e-summary")
    expect(summary).to_contain_text("secret against base", timeout=300_000)
    expect(page.locator("#ft-e-report")).to_contain_text("rouge_l")
    expect(page.locator("#ft-e-cancel")).to_be_disabled()  # a finished run: nothing to cancel
    shot(page, "newcomer-evaluate-report")
    assert not page.dialogs and not page.errors


def test_a_reload_reopens_the_dataset_that_was_open(app, page):
    page.goto(app.url)
    picker = page.locator("#ft-dataset input")
    expect(picker).to_have_value("secrets")  # the newest, on a first visit
    # The choice is kept by a round trip to the server: wait for it to be written (the value
    # is encrypted, so each write reads differently) before reloading.
    stored = "() => localStorage.getItem('ftapp-dataset')"
    page.wait_for_function(f"() => ({stored})() !== null")  # the first visit's choice
    before = page.evaluate(stored)
    picker.fill("other")
    picker.press("Enter")
    expect(page.locator("#ft-position")).to_contain_text("of 6 matching")
    page.wait_for_function(f"before => ({stored})() !== before", arg=before)
    page.reload()
    expect(picker).to_have_value("other")
    expect(page.locator("#ft-position")).to_contain_text("of 6 matching")
    saved = json.dumps(page.evaluate("Object.keys(localStorage)"))
    assert "ftapp-dataset" in saved
    assert not page.dialogs and not page.errors
