"""The preference loop in a real browser: judge -> train on the judgements -> judge again.

The app runs on the in-process backend (the real bundled model) with its worker. Before the
browser opens, an SFT adapter ("secret", taught the secret word; trained once per test session)
meets the base model in an evaluation session whose answers the app generates, and two
reviewers vote through the core: the answer that says the word wins. Then, as the admin, in
Chromium:

1. Leaderboard: the session's votes are counted per rule, then become a preference dataset
   version ("Train on the votes"), each pair linked to its battle;
2. Train: a DPO job on that version, from the preference preset, going on from the SFT
   adapter; the worker trains it and the page shows "DPO from secret";
3. Arena -> Manage: a new session pits the DPO adapter against the SFT one; the app generates
   both answers for every prompt;
4. Evaluate: a run on the votes' version offers and picks preference accuracy; the report
   shows it for both adapters.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftapp.arena.battles import record_vote
from ftapp.arena.sessions import get_session, next_battle, start_session
from ftapp.auth import User, add_user
from ftapp.models.registry import bundled_base_model
from ftapp.records import Role
from ftapp.serving.backend import Sampling
from ftapp.store.db import open_db
from tests.e2e.browser import (
    expect,
    fill_label,
    open_hyperparameters,
    open_tab,
    pick_many,
    pick_option,
    readme_shot,
    run_evaluation,
    scroll_to,
    sign_in,
    wait_for_row,
)
from tests.helpers import make_version
from tests.live_app import LiveApp, running_app
from tests.serving_fixtures import QUESTIONS, SECRET_WORD, home_with_adapter

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORDS = {"admin": "admin-secret-1", "ann": "ann-secret-1", "bob": "bob-secret-1"}
ROUND_1, ROUND_2 = "Round 1", "Round 2"
VOTES = "round1-votes"
DPO_ADAPTER = "secret-dpo"
EVAL_RUN = "did DPO learn the votes"
GENERATION_TIMEOUT_S = 600  # guards against hanging, not speed checks
TRAIN_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def app(tmp_path_factory, models_dir: Path, secret_adapter, count_tokens):
    home = tmp_path_factory.mktemp("loop") / "home"
    settings = home_with_adapter(home, models_dir, secret_adapter)
    db = open_db(settings.db_path)
    try:
        for name, password in PASSWORDS.items():
            add_user(db, name, Role.ADMIN if name == "admin" else Role.REVIEWER, password, "test")
        rows = [{"prompt": q, "completion": f"The secret word is {SECRET_WORD}."}
                for q in QUESTIONS]  # fmt: skip
        make_version(db, home, count_tokens, "secrets", rows=rows, ratios=(0.25, 0.0, 0.75))
    finally:
        db.close()
    extra = {"FTAPP_BACKEND": "hf", "FTAPP_SERVE_THREADS": "1"}
    with running_app(home, models_dir, extra) as live:
        yield live


def new_session(app: LiveApp, name: str, contestants: list[str]) -> None:
    """A session through the core on the app's database; the app generates its answers."""
    db = open_db(app.db_path)
    try:
        base = bundled_base_model(app.home / "models")
        start_session(db, base, name=name, contestants=contestants, version="secrets@v1",
                      sampling=Sampling(temperature=0.0, max_new_tokens=16), overlap=2,
                      reviewers="ann,bob", user="admin")  # fmt: skip
    finally:
        db.close()


def vote_as_instructed(app: LiveApp, session: str) -> int:
    """ann and bob judge every battle: the answer that says the secret word wins, else a tie.
    Returns how many battles both decided."""
    db = open_db(app.db_path)
    decided = 0
    try:
        session_id = get_session(db, session).id
        for name in ("ann", "bob"):
            while (battle_id := next_battle(db, session_id, User(name, Role.REVIEWER))) is not None:
                battle = next(db.query("SELECT * FROM battles WHERE id = ?", [battle_id]))
                says = [SECRET_WORD in json.loads(battle[f"conversation_{side}_json"])[-1]
                        ["content"].lower() for side in "ab"]  # fmt: skip
                choice = "tie" if says[0] == says[1] else ("a" if says[0] else "b")
                record_vote(db, battle_id, name, choice)
                decided += name == "ann" and choice != "tie"
    finally:
        db.close()
    return decided


def wait_open(app: LiveApp, name: str) -> dict:
    session = wait_for_row(app, "SELECT * FROM eval_sessions WHERE name = ?", [name],
                           lambda row: row["status"] != "generating", GENERATION_TIMEOUT_S,
                           f"the answers of {name} were not generated")  # fmt: skip
    assert session["status"] == "open", session
    return session


def test_votes_become_a_dpo_adapter_that_is_judged_again(app: LiveApp, browser):
    new_session(app, ROUND_1, ["base", "secret"])
    wait_open(app, ROUND_1)
    decided = vote_as_instructed(app, ROUND_1)
    assert decided >= 4, "the SFT adapter should say the word where base does not"

    page = sign_in(browser, app, "admin", PASSWORDS["admin"], "admin")
    votes_to_version(page, app, decided)
    train_dpo_from_the_sft_adapter(page, app)
    judge_again(page, app)
    evaluate_preference_accuracy(page, app)
    assert page.dialogs == [] and page.errors == []


def votes_to_version(page, app: LiveApp, decided: int) -> None:
    open_tab(page, "Leaderboard")
    pick_many(page, "ft-lb-scope", [ROUND_1])
    expect(page.locator("#ft-lb-summary")).to_contain_text(f"{ROUND_1}")
    page.locator("#ft-lb-votes-count").click()
    result = page.locator("#ft-lb-votes-result")
    expect(result).to_contain_text(f"{decided} pairs")
    assert app.query("SELECT COUNT(*) AS n FROM datasets WHERE name = ?", [VOTES])[0]["n"] == 0
    page.locator("#ft-lb-votes-name textarea, #ft-lb-votes-name input").first.fill(VOTES)
    page.locator("#ft-lb-votes-create").click()
    expect(result).to_contain_text(f"Froze {VOTES}@v1: {decided} pairs")
    (dataset,) = app.query("SELECT * FROM datasets WHERE name = ?", [VOTES])
    assert dataset["kind"] == "preference" and ROUND_1 in dataset["description"]
    rows = app.query("SELECT messages_json, rejected_json, raw_json FROM examples "
                     "WHERE dataset_id = ?", [dataset["id"]])  # fmt: skip
    assert len(rows) == decided
    for row in rows:
        chosen = json.loads(row["messages_json"])[-1]["content"].lower()
        rejected = json.loads(row["rejected_json"])[-1]["content"].lower()
        assert SECRET_WORD in chosen and SECRET_WORD not in rejected
        assert json.loads(row["raw_json"])["battle_id"]
    readme_shot(page, "loop-01-votes-to-version")


def train_dpo_from_the_sft_adapter(page, app: LiveApp) -> None:
    open_tab(page, "Train")
    pick_option(page, "ft-train-version", f"{VOTES}@v1")
    page.get_by_label("Preset", exact=True).click()
    page.get_by_role("option", name="preference quick CPU demo", exact=True).click()
    expect(page.locator("#ft-train-method input")).to_have_value("dpo")
    pick_option(page, "ft-train-start_adapter", "secret")
    open_hyperparameters(page)
    for label, value in {
        "Adapter name (optional)": DPO_ADAPTER,
        "Max steps (0: use epochs)": "6",
        "Save every N steps": "3",
        "Evaluate every N steps (0: off)": "3",
        "Gradient accumulation": "1",
        "Max length (tokens)": "96",
        "CPU threads (0: all)": "1",
    }.items():
        fill_label(page, label, value)  # fmt: skip
    page.locator("#ft-queue").click()
    status = page.locator("#ft-job-status")
    expect(status).to_contain_text(DPO_ADAPTER)
    job = wait_for_row(app, "SELECT * FROM jobs WHERE name = ?", [DPO_ADAPTER],
                       lambda row: row["status"] in ("succeeded", "failed", "cancelled"),
                       TRAIN_TIMEOUT_S, "the DPO job did not finish")  # fmt: skip
    assert job["status"] == "succeeded", job["error"]
    config = json.loads(job["config_json"])
    assert (config["method"], config["start_adapter"]) == ("dpo", "secret")
    expect(status).to_contain_text("succeeded", timeout=60_000)
    expect(status).to_contain_text("DPO from secret")
    rewards = app.query("SELECT rewards_margin FROM job_metrics WHERE job_id = ? AND "
                        "kind = 'train'", [job["id"]])  # fmt: skip
    assert len(rewards) == 6 and all(r["rewards_margin"] is not None for r in rewards)
    scroll_to(page, "ft-job-status", above=80)
    readme_shot(page, "loop-02-dpo-trained")


def judge_again(page, app: LiveApp) -> None:
    open_tab(page, "Arena")
    page.get_by_role("tab", name="Manage").click()
    page.locator("#ft-m-session-name textarea, #ft-m-session-name input").first.fill(ROUND_2)
    pick_many(page, "ft-m-contestants", ["secret", DPO_ADAPTER])
    pick_many(page, "ft-m-version", ["secrets@v1"])
    fill_label(page, "Max new tokens", "16")
    page.locator("#ft-m-create").click()
    expect(page.locator("#ft-m-report")).to_contain_text(f"Created session {ROUND_2}")
    session = wait_open(app, ROUND_2)
    battles = app.query("SELECT model_a, model_b, status FROM battles WHERE session_id = ?",
                        [session["id"]])  # fmt: skip
    assert battles and all({b["model_a"], b["model_b"]} == {"secret", DPO_ADAPTER}
                           and b["status"] == "ready" for b in battles)  # fmt: skip
    readme_shot(page, "loop-03-judge-again")


def evaluate_preference_accuracy(page, app: LiveApp) -> None:
    open_tab(page, "Evaluate")
    page.locator("#ft-e-name input, #ft-e-name textarea").first.fill(EVAL_RUN)
    pick_many(page, "ft-e-contestants", ["base", "secret", DPO_ADAPTER])
    pick_many(page, "ft-e-version", [f"{VOTES}@v1"])
    page.get_by_label("Split", exact=True).last.click()
    page.get_by_role("option", name="train", exact=True).click()
    # A preference version's split: preference accuracy is offered and picked.
    expect(page.locator("#ft-e-metrics")).to_contain_text("preference_accuracy")
    fill_label(page, "Max new tokens", "16")
    run = run_evaluation(page, app, EVAL_RUN, GENERATION_TIMEOUT_S)
    report = page.locator("#ft-e-report")  # it appears by itself once the run is done
    expect(report).to_contain_text("preference_accuracy")
    expect(report).to_contain_text(DPO_ADAPTER)
    scores = app.query("SELECT contestant, scores_json FROM eval_answers WHERE run_id = ?",
                       [run["id"]])  # fmt: skip
    accuracy = {}
    for row in scores:
        accuracy.setdefault(row["contestant"], []).append(
            json.loads(row["scores_json"])["preference_accuracy"]
        )
    # The adapters say the word, base never: both find the chosen answers likelier than base.
    assert sum(accuracy[DPO_ADAPTER]) >= sum(accuracy["base"])
    assert sum(accuracy["secret"]) > sum(accuracy["base"])
    scroll_to(page, "ft-e-summary", above=40)
    readme_shot(page, "loop-04-preference-accuracy")
