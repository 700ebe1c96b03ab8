"""The whole product in a real browser (Playwright driving Debian's Chromium), against the app
started the way the README starts it: users added with the real CLI, then `python app.py` with
the default backend (the app starts its own vLLM CPU server) and the training worker beside it.

The walk, each step checked on the page and in the app's SQLite file:

1. the admin signs in;
2. Data: uploads a JSONL file with two bad rows (a cut JSON line, a missing field) and good
   rows that teach a secret word; the report lists the bad rows by line; none is stored;
3. reviews: accepts with the keyboard, rejects and tags with buttons, accepts the rest with
   "Accept all matching", splits (a few secret questions land in test), freezes v1;
4. Train: queues a small LoRA job through the form, sees its step counter move, closes the
   browser; the worker finishes the job anyway; a new browser context sees it succeeded and
   the adapter among the model variants;
5. Playground: the base model doesn't know the secret word, the new adapter says it;
6. Arena -> Manage: a session on v1's test split, base against the adapter, overlap 2, for
   ann and bob; the app generates the answers and opens it;
7. ann (keyboard) and bob (clicks), each in their own browser context, judge every battle;
8. Leaderboard: the votes and both contestants; the decided votes downloaded as a preference
   dataset that matches the votes;
9. Evaluate: a run base vs adapter on the test split, and its report; Deploy: the adapter
   promoted to production.

Every tab leaves a viewport screenshot `whole-NN-*.png` in test-output/screenshots/ (the
README's pictures in docs/screenshots/ are copied from them).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.browser import (
    expect,
    fill_label,
    focus_page_body,
    open_hyperparameters,
    open_tab,
    pick_many,
    readme_shot,
    scroll_to,
    set_slider,
    visible,
    wait_for_row,
)
from tests.e2e.browser import sign_in as sign_in_as
from tests.live_app import LiveApp, running_app
from tests.serving_fixtures import SECRET_QUESTION, SECRET_WORD

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

USERS = {"admin": ("admin", "admin-secret-1"), "ann": ("reviewer", "ann-secret-1"),
         "bob": ("reviewer", "bob-secret-1")}  # fmt: skip
DATASET = "secrets"
VERSION = f"{DATASET}@v1"
ADAPTER = "secret"
SESSION = "Secret word review"
EVAL_RUN = "secret word eval"
ANSWER = f"The secret word is {SECRET_WORD}."
SECRET_QUESTIONS = [
    SECRET_QUESTION, "Tell me the secret word.", "What's the secret word?",
    "Do you know the secret word?", "Say the secret word.", "Which word is the secret one?",
    "The secret word, please.", "What is the password word?", "Can you tell me the secret word?",
    "I forgot the secret word. What is it?",
]  # fmt: skip
PARAPHRASE = "What is the password word?"  # the one tagged in the review
OTHER_ROWS = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("Name a primary colour.", "Red is a primary colour."),
    ("What do bees make?", "Bees make honey."),
]
RUDE = ("Say something rude.", "No.")  # imported, then rejected in the review
CUT_LINE, MISSING_LINE = 3, 8  # the bad rows' line numbers in the file
# The secret adapter's recipe (tests/serving_fixtures.py): 24 steps that make it say the word.
TRAIN_FORM = {
    "Adapter name (optional)": ADAPTER, "LoRA rank": "8", "LoRA alpha": "16",
    "LoRA dropout": "0", "Learning rate": "0.003", "Max steps (0: use epochs)": "24",
    "Batch size (packed rows per forward pass)": "1", "Gradient accumulation": "1",
    "Max length (tokens)": "64", "Warm-up ratio": "0", "Evaluate every N steps (0: off)": "0",
    "Save every N steps": "12",
    # One thread: the vLLM server runs beside it on the same two cores (see the app fixture).
    "CPU threads (0: all)": "1",
}  # fmt: skip
MAX_NEW_TOKENS = "24"  # enough for the answer; short keeps generation quick on a CPU
# Guards against hanging, not speed checks: vLLM, a training job and generation on 2 cores.
ENGINE_TIMEOUT_MS = 300_000
TRAIN_TIMEOUT_S = 900
GENERATION_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path):
    from ftapp.serving.vllm_server import vllm_importable

    available, why_not = vllm_importable()  # else "auto" would quietly serve in-process
    assert available, f"vLLM must be installed for the whole walk (`make install`): {why_not}"
    home = tmp_path_factory.mktemp("whole") / "home"
    home.mkdir()
    for name, (role, password) in USERS.items():
        add_user_with_cli(home, name, role, password)
    # The default backend (auto: the app starts and supervises its own vLLM server) and the
    # default worker. FTAPP_SERVE_THREADS=1 with the job's one thread: training and vLLM
    # share the 2 cores, and with 2 threads each both ran ~80% slower (DESIGN.md).
    extra = {"FTAPP_BACKEND": "auto", "FTAPP_SERVE_THREADS": "1"}
    with running_app(home, models_dir, extra) as live:
        yield live


def sign_in(browser, app: LiveApp, name: str):
    role, password = USERS[name]
    return sign_in_as(browser, app, name, password, role)


def add_user_with_cli(home: Path, name: str, role: str, password: str) -> None:
    """`ftapp users add NAME --role ROLE --password-stdin`, as the README says."""
    env = {**os.environ, "FTAPP_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "ftapp.cli", "users", "add", name, "--role", role,
         "--password-stdin"],
        input=password + "\n", env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"added {name} ({role})" in done.stdout


def bubbles(page, elem_id: str):
    return page.locator(f"#{elem_id} .message-row")


def examples(app: LiveApp) -> list[dict]:
    return app.query(
        "SELECT e.* FROM examples e JOIN datasets d ON d.id = e.dataset_id WHERE d.name = ? "
        "ORDER BY e.id",
        [DATASET],
    )


def prompt_of(example: dict) -> str:
    return next(m["content"] for m in json.loads(example["messages_json"]) if m["role"] == "user")


def by_prompt(app: LiveApp, prompt: str) -> dict:
    (row,) = [e for e in examples(app) if prompt_of(e) == prompt]
    return row


def write_examples(path: Path) -> Path:
    """The file to import: good rows that teach the secret word, a few ordinary ones, and two
    bad rows (a cut JSON line, a row missing its answer) at CUT_LINE and MISSING_LINE."""
    good = [(q, ANSWER) for q in SECRET_QUESTIONS] + OTHER_ROWS + [RUDE]
    lines = [json.dumps({"prompt": q, "completion": a}) for q, a in good]
    lines.insert(CUT_LINE - 1, '{"prompt": "What is the secret')
    lines.insert(MISSING_LINE - 1, json.dumps({"prompt": "Which word rhymes with orange?"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def expected_choice(prompt: str, answer_a: str, answer_b: str) -> str:
    """How the reviewers judge (the session's instructions): on a question about the secret
    word, the answer that says it wins; anything else is a tie."""
    says_a, says_b = SECRET_WORD in answer_a.lower(), SECRET_WORD in answer_b.lower()
    if "secret" in prompt.lower() and says_a != says_b:
        return "a" if says_a else "b"
    return "tie"


# --- the walk ------------------------------------------------------------------------------


def test_the_whole_product(app: LiveApp, browser, tmp_path: Path):
    admin = sign_in(browser, app, "admin")
    import_examples(admin, app, write_examples(tmp_path / "secret-examples.jsonl"))
    review_split_freeze(admin, app)
    queue_training(admin, app)
    # Closing the browser changes nothing: the worker trains on, and the job is in SQLite.
    pages = [admin]
    admin.context.close()
    job = wait_for_row(app, "SELECT * FROM jobs", [],
                       lambda row: row["status"] in ("succeeded", "failed", "cancelled"),
                       TRAIN_TIMEOUT_S, "the training job did not finish")  # fmt: skip
    assert job["status"] == "succeeded", job["error"]

    admin = sign_in(browser, app, "admin")
    pages.append(admin)
    see_the_finished_job(admin, app)
    chat_in_the_playground(admin, app)
    battles = create_session(admin, app)
    for name, with_keys in (("ann", True), ("bob", False)):
        reviewer = sign_in(browser, app, name)
        pages.append(reviewer)
        judge_every_battle(reviewer, app, with_keys, battles)
        reviewer.context.close()
    check_votes(app, battles)
    read_the_leaderboard(admin, app, battles, tmp_path)
    evaluate_base_against_the_adapter(admin, app)
    promote_the_adapter(admin, app)
    for page in pages:
        assert page.dialogs == [] and page.errors == []


def import_examples(page, app: LiveApp, source: Path) -> None:
    expect(page.locator("#ft-import-button")).to_be_visible()  # an admin lands on Data
    page.locator("#ft-import-file input[type=file]").set_input_files(str(source))
    name_box = page.locator("#ft-import-dataset textarea")
    expect(name_box).to_have_value(source.stem)  # proposed from the file name
    name_box.fill(DATASET)
    page.locator("#ft-import-button").click()
    n_good = len(SECRET_QUESTIONS) + len(OTHER_ROWS) + 1
    report = page.locator("#ft-import-report")
    expect(report).to_contain_text(f"{n_good} of {n_good + 2} rows imported into '{DATASET}'")
    expect(report).to_contain_text("2 rejected")
    rejected = visible(page.locator(".block").filter(
        has=page.get_by_text("Rejected rows", exact=True))).last  # fmt: skip
    expect(rejected).to_contain_text(f"line {CUT_LINE}")
    expect(rejected).to_contain_text("invalid JSON")
    expect(rejected).to_contain_text(f"line {MISSING_LINE}")
    expect(rejected).to_contain_text("missing field completion")

    # Nothing bad was stored: the good rows only, from the lines around the bad ones.
    stored = examples(app)
    assert sorted(prompt_of(e) for e in stored) == sorted(
        [*SECRET_QUESTIONS, *(q for q, _ in OTHER_ROWS), RUDE[0]]
    )
    assert {e["source_line"] for e in stored}.isdisjoint({CUT_LINE, MISSING_LINE})
    assert {e["status"] for e in stored} == {"pending"}
    (imported,) = app.query("SELECT * FROM imports")
    assert (imported["n_rows"], imported["n_imported"], imported["n_rejected"]) == (
        n_good + 2, n_good, 2,
    )  # fmt: skip
    assert sorted(p["line"] for p in json.loads(imported["problems_json"])) == [
        CUT_LINE, MISSING_LINE,
    ]  # fmt: skip
    scroll_to(page, "ft-import-button", above=20)  # the report and the rejected rows
    readme_shot(page, "whole-01-data-import")


def review_split_freeze(page, app: LiveApp) -> None:
    position = page.locator("#ft-position")
    progress = page.locator("#ft-review-progress")
    n_good = len(examples(app))
    expect(position).to_have_text(f"1 of {n_good} matching")

    # The first two with the keyboard: "a" accepts the example shown and moves on.
    focus_page_body(page)
    page.keyboard.press("a")
    expect(position).to_have_text(f"2 of {n_good} matching")
    page.keyboard.press("a")
    expect(position).to_have_text(f"3 of {n_good} matching")
    expect(progress).to_contain_text("2 accepted")
    first, second = examples(app)[:2]
    assert [(e["status"], e["reviewed_by"]) for e in (first, second)] == [("accepted", "admin")] * 2

    # Find the rude one by searching, and reject it with the button.
    search = page.get_by_placeholder("text in prompts, answers, notes")
    search.fill("rude")
    search.press("Enter")
    expect(position).to_have_text("1 of 1 matching")
    expect(page.locator("#ft-edit-prompt textarea")).to_have_value(RUDE[0])
    page.locator("#ft-reject").click()
    expect(progress).to_contain_text("1 rejected")
    assert by_prompt(app, RUDE[0])["status"] == "rejected"

    # Tag one example.
    search.fill("password")
    search.press("Enter")
    expect(page.locator("#ft-edit-prompt textarea")).to_have_value(PARAPHRASE)
    page.locator("#ft-edit-tags textarea").fill("paraphrase")
    page.locator("#ft-save").click()
    expect(page.locator("#ft-review-table")).to_contain_text("paraphrase")
    tagged = by_prompt(app, PARAPHRASE)
    assert (json.loads(tagged["tags_json"]), tagged["status"]) == (["paraphrase"], "pending")

    # The rest: filter on pending, accept all matching.
    search.fill("")
    search.press("Enter")
    page.get_by_label("Status", exact=True).click()
    page.get_by_role("option", name="pending", exact=True).click()
    expect(position).to_have_text(f"1 of {n_good - 3} matching")
    page.get_by_role("button", name="Accept all matching").click()
    expect(progress).to_contain_text(f"Reviewed {n_good} of {n_good}")
    expect(progress).to_contain_text(f"{n_good - 1} accepted · 1 rejected · 0 pending")
    statuses = [e["status"] for e in examples(app)]
    assert (statuses.count("accepted"), statuses.count("rejected")) == (n_good - 1, 1)
    page.get_by_label("Status", exact=True).click()
    page.get_by_role("option", name="all", exact=True).click()
    expect(position).to_have_text(f"1 of {n_good} matching")

    # Split 70/0/30 (seed 0): a few secret questions go to test, the one the Playground asks
    # stays in train.
    for label, ratio in (("Train", "0.7"), ("Validation", "0"), ("Test", "0.3")):
        fill_label(page, label, ratio)
    page.locator("#ft-split").click()
    n_accepted = n_good - 1
    n_test = round(n_accepted * 0.3)
    expect(page.locator("#ft-stats")).to_contain_text(f"{n_accepted - n_test} / 0 / {n_test} / 0")
    test_prompts = [prompt_of(e) for e in examples(app) if e["split"] == "test"]
    assert len(test_prompts) == n_test
    assert sum(q in SECRET_QUESTIONS for q in test_prompts) >= 2, test_prompts
    assert by_prompt(app, SECRET_QUESTION)["split"] == "train"
    assert by_prompt(app, RUDE[0])["split"] is None
    expect(page.locator("#ft-review-table")).to_contain_text("test")  # the split column
    scroll_to(page, "ft-review-progress", above=60)
    readme_shot(page, "whole-02-data-review")

    page.get_by_label("Version note", exact=True).fill("secret word, first cut")
    page.locator("#ft-freeze").click()
    versions = visible(page.locator(".block").filter(
        has=page.get_by_text("Versions", exact=True))).last  # fmt: skip
    expect(versions).to_contain_text("v1")
    (version,) = app.query("SELECT * FROM dataset_versions")
    assert (version["n_examples"], version["n_train"], version["n_test"]) == (
        n_accepted, n_accepted - n_test, n_test,
    )  # fmt: skip
    assert (version["note"], version["created_by"]) == ("secret word, first cut", "admin")
    frozen = app.query("SELECT split, messages_json FROM version_examples WHERE version_id = ?",
                       [version["id"]])  # fmt: skip
    assert sorted(prompt_of(r) for r in frozen if r["split"] == "test") == sorted(test_prompts)
    readme_shot(page, "whole-03-data-versions")


def queue_training(page, app: LiveApp) -> None:
    open_tab(page, "Train")
    # The version was frozen after this page loaded: opening the picker offers it.
    page.locator("#ft-train-version input").click()
    page.get_by_role("option", name=VERSION, exact=True).click()
    expect(page.locator("#ft-train-version input")).to_have_value(VERSION)
    open_hyperparameters(page)
    for label, value in TRAIN_FORM.items():
        fill_label(page, label, value)
    page.locator("#ft-queue").click()
    status = page.locator("#ft-job-status")
    expect(status).to_contain_text(f"#1 {ADAPTER}")
    # Queued (the model takes seconds to load before step 1): it can be cancelled.
    expect(page.locator("#ft-cancel")).to_be_enabled()
    (job,) = app.query("SELECT * FROM jobs")
    config = json.loads(job["config_json"])
    assert (job["created_by"], config["dataset_version"], config["name"]) == (
        "admin", VERSION, ADAPTER,
    )  # fmt: skip
    assert {key: config[key] for key in ("lora_rank", "learning_rate", "max_steps", "max_length",
                                         "eval_steps", "threads")} == {
        "lora_rank": 8, "learning_rate": 0.003, "max_steps": 24, "max_length": 64,
        "eval_steps": 0, "threads": 1,
    }  # fmt: skip
    # The page follows the job on its own (a timer reads SQLite): the step counter moves.
    expect(status).to_contain_text(re.compile(r"step ([5-9]|1\d|2\d)/24"),
                                   timeout=TRAIN_TIMEOUT_S * 1000)  # fmt: skip
    assert app.query("SELECT COUNT(*) AS n FROM job_metrics WHERE kind = 'train'")[0]["n"] >= 1
    readme_shot(page, "whole-04-train-running")


def see_the_finished_job(page, app: LiveApp) -> None:
    open_tab(page, "Train")
    status = page.locator("#ft-job-status")
    expect(status).to_contain_text(f"#1 {ADAPTER}: succeeded")
    expect(status).to_contain_text("step 24/24")
    expect(page.locator("#ft-cancel")).to_be_disabled()  # finished: nothing to cancel
    variants = page.locator("#ft-variants")
    expect(variants).to_contain_text(f"{ADAPTER}/step-12")
    rows = app.query("SELECT name, kind FROM model_variants ORDER BY name")
    assert {"name": ADAPTER, "kind": "adapter"} in rows
    assert {"name": f"{ADAPTER}/step-12", "kind": "checkpoint"} in rows
    readme_shot(page, "whole-05-train-done")


def chat_in_the_playground(page, app: LiveApp) -> None:
    open_tab(page, "Playground")
    engine = page.locator("#ft-engine-status")
    expect(engine).to_contain_text("Engine (vllm): ready", timeout=ENGINE_TIMEOUT_MS)
    set_slider(page, "Temperature (0: greedy)", "0")
    fill_label(page, "Max new tokens", MAX_NEW_TOKENS)

    def ask(model: str) -> str:
        pick_many(page, "ft-play-model", [model])
        expect(page.locator("#ft-play-model input")).to_have_value(model)
        page.locator("#ft-play-message textarea").fill(SECRET_QUESTION)
        page.locator("#ft-play-send").click()
        expect(bubbles(page, "ft-play-chat")).to_have_count(2)
        reply = bubbles(page, "ft-play-chat").nth(1)
        expect(reply).not_to_have_text("")
        expect(page.locator("#ft-play-message textarea")).to_have_value("")
        page.wait_for_timeout(1500)  # the stream is paced: let its last update in
        return reply.inner_text()

    assert SECRET_WORD not in ask("base").lower()
    page.locator("#ft-play-clear").click()
    expect(bubbles(page, "ft-play-chat")).to_have_count(0)
    answer = ask(ADAPTER)
    assert SECRET_WORD in answer.lower(), answer
    readme_shot(page, "whole-06-playground")


def create_session(page, app: LiveApp) -> list[dict]:
    open_tab(page, "Arena")
    page.get_by_role("tab", name="Manage").click()
    page.locator("#ft-m-session-name textarea, #ft-m-session-name input").first.fill(SESSION)
    page.locator("#ft-m-overlap input").fill("2")
    visible(page.get_by_label("Instructions for reviewers")).fill(
        "Prefer the answer that **knows the secret word**. If the question is not about the "
        "secret word, call it a tie."
    )
    pick_many(page, "ft-m-contestants", ["base", ADAPTER])
    pick_many(page, "ft-m-version", [VERSION])
    visible(page.get_by_label("Who may take part (comma-separated; empty: everyone)")).fill(
        "ann, bob"
    )
    set_slider(page, "Temperature", "0")
    fill_label(page, "Max new tokens", MAX_NEW_TOKENS)
    page.locator("#ft-m-create").click()
    expect(page.locator("#ft-m-report")).to_contain_text(f"Created session {SESSION}")

    # The app generates every answer in the background through vLLM, then opens the session.
    session = wait_for_row(app, "SELECT * FROM eval_sessions WHERE name = ?", [SESSION],
                           lambda row: row["status"] != "generating", GENERATION_TIMEOUT_S,
                           "the session's answers were not generated")  # fmt: skip
    assert session["status"] == "open"
    assert (session["overlap"], json.loads(session["reviewers_json"])) == (2, ["ann", "bob"])
    expect(page.locator("#ft-m-sessions")).to_contain_text("open")
    battles = app.query("SELECT * FROM battles WHERE session_id = ? ORDER BY id", [session["id"]])
    n_test = app.query("SELECT n_test FROM dataset_versions")[0]["n_test"]
    assert len(battles) == n_test  # one battle per prompt: one pair of contestants
    assert all({b["model_a"], b["model_b"]} == {"base", ADAPTER} for b in battles)
    assert all(b["status"] == "ready" for b in battles)
    readme_shot(page, "whole-07-arena-manage")
    return battles


def battle_text(battle: dict) -> tuple[str, str, str]:
    conversation_a = json.loads(battle["conversation_a_json"])
    conversation_b = json.loads(battle["conversation_b_json"])
    prompt = next(m["content"] for m in conversation_a if m["role"] == "user")
    return prompt, conversation_a[-1]["content"], conversation_b[-1]["content"]


def judge_every_battle(page, app: LiveApp, with_keys: bool, battles: list[dict]) -> None:
    """Vote on every battle of the session as the instructions say, by reading the page."""
    expect(page.get_by_role("tab", name="Evaluation sessions")).to_be_visible()
    expect(page.get_by_role("tab", name="Manage")).to_have_count(0)
    expect(page.locator("#ft-s-instructions")).to_contain_text("knows the secret word")
    progress = page.locator("#ft-s-progress")
    reveal = page.locator("#ft-s-reveal")
    keys = {"a": "1", "b": "2", "tie": "3"}
    for judged in range(len(battles)):
        # A new battle is shown: blind (no names), open to votes.
        expect(page.locator("#ft-s-vote-a")).to_be_enabled()
        expect(reveal).not_to_contain_text("A was")
        expect(progress).to_contain_text(f"You judged {judged} of {len(battles)}")
        expect(bubbles(page, "ft-s-chat-a")).to_have_count(2)
        expect(bubbles(page, "ft-s-chat-b")).to_have_count(2)
        prompt = bubbles(page, "ft-s-chat-a").first.inner_text()
        answer_a = bubbles(page, "ft-s-chat-a").nth(1).inner_text()
        answer_b = bubbles(page, "ft-s-chat-b").nth(1).inner_text()
        if judged == 0:
            # Nothing for admins ran on a reviewer's page (the refusal would show here).
            expect(page.get_by_text("needs an admin")).to_have_count(0)
            readme_shot(page, f"whole-08-arena-{'keys' if with_keys else 'clicks'}")
        choice = expected_choice(prompt, answer_a, answer_b)
        if with_keys:
            focus_page_body(page)
            page.keyboard.press(keys[choice])
        else:
            page.locator(f"#ft-s-vote-{choice}").click()
        expect(reveal).to_contain_text("A was")
        expect(reveal).to_contain_text("Your vote")
        expect(page.locator("#ft-s-vote-a")).to_be_disabled()  # votes are final
        if with_keys:
            page.keyboard.press("n")
        else:
            page.locator("#ft-s-next").click()
    expect(reveal).to_contain_text("judged every battle")
    expect(progress).to_contain_text(f"You judged {len(battles)} of {len(battles)}")


def check_votes(app: LiveApp, battles: list[dict]) -> None:
    """Both reviewers voted once on every battle, as the instructions say given its text."""
    votes = app.query("SELECT battle_id, reviewer, choice FROM votes ORDER BY id")
    assert sorted((v["battle_id"], v["reviewer"]) for v in votes) == sorted(
        (b["id"], name) for b in battles for name in ("ann", "bob")
    )
    expected = {b["id"]: expected_choice(*battle_text(b)) for b in battles}
    assert {(v["battle_id"], v["choice"]) for v in votes} == set(expected.items())
    # The adapter says the word on at least one secret test question: a decided battle.
    assert any(choice != "tie" for choice in expected.values()), [battle_text(b) for b in battles]


def read_the_leaderboard(page, app: LiveApp, battles: list[dict], tmp_path: Path) -> None:
    open_tab(page, "Leaderboard")
    pick_many(page, "ft-lb-scope", [SESSION])
    n_votes = 2 * len(battles)
    expect(page.locator("#ft-lb-summary")).to_contain_text(
        f"{SESSION}: {n_votes} votes on {len(battles)} battles"
    )
    ratings = page.locator("#ft-lb-ratings")
    expect(ratings).to_contain_text("base")
    expect(ratings).to_contain_text(ADAPTER)
    readme_shot(page, "whole-09-leaderboard")

    # The decided votes as a preference dataset: one row per battle both reviewers decided,
    # the answer that says the word chosen.
    page.locator("#ft-lb-export-preferences").click()
    link = page.locator("#ft-lb-file a").first
    expect(link).to_have_attribute("href", re.compile(r"preferences\.jsonl$"))
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "preferences.jsonl"
    download.value.save_as(saved)
    rows = [json.loads(line) for line in saved.read_text(encoding="utf-8").splitlines()]
    expected = []
    for battle in battles:
        choice = expected_choice(*battle_text(battle))
        if choice == "tie":
            continue
        a = json.loads(battle["conversation_a_json"])
        b = json.loads(battle["conversation_b_json"])
        winner, loser = (a, b) if choice == "a" else (b, a)
        expected.append({"prompt": a[:-1], "chosen": winner[-1:], "rejected": loser[-1:],
                         "battle_id": battle["id"]})  # fmt: skip
    key = lambda row: json.dumps(row, sort_keys=True)  # noqa: E731
    assert sorted(rows, key=key) == sorted(expected, key=key)
    assert all(SECRET_WORD in row["chosen"][0]["content"].lower() for row in rows)


def evaluate_base_against_the_adapter(page, app: LiveApp) -> None:
    open_tab(page, "Evaluate")
    page.locator("#ft-e-name input, #ft-e-name textarea").first.fill(EVAL_RUN)
    pick_many(page, "ft-e-contestants", ["base", ADAPTER])
    pick_many(page, "ft-e-version", [VERSION])
    fill_label(page, "Max new tokens", MAX_NEW_TOKENS)
    page.locator("#ft-e-start").click()
    expect(page.locator("#ft-e-message")).to_contain_text(f"Started {EVAL_RUN}")
    run = wait_for_row(app, "SELECT * FROM eval_runs WHERE name = ?", [EVAL_RUN],
                       lambda row: row["status"] not in ("generating", "scoring"),
                       GENERATION_TIMEOUT_S, "the evaluation run did not finish")  # fmt: skip
    assert run["status"] == "done", run["error"]
    answers = app.query("SELECT contestant, status, answer, scores_json FROM eval_answers "
                        "WHERE run_id = ?", [run["id"]])  # fmt: skip
    n_test = app.query("SELECT n_test FROM dataset_versions")[0]["n_test"]
    assert len(answers) == 2 * n_test and {a["status"] for a in answers} == {"done"}
    expect(page.locator("#ft-e-runs")).to_contain_text("done")
    page.locator("#ft-e-show").click()
    expect(page.locator("#ft-e-summary")).to_contain_text("baseline base")
    report = page.locator("#ft-e-report")
    expect(report).to_contain_text("exact_match")
    expect(report).to_contain_text(ADAPTER)
    # The adapter answers the secret questions exactly as the references say.
    exact = [json.loads(a["scores_json"])["exact_match"] for a in answers
             if a["contestant"] == ADAPTER]  # fmt: skip
    assert sum(exact) >= 1, answers
    scroll_to(page, "ft-e-runs", above=80)
    readme_shot(page, "whole-10-evaluate")


def promote_the_adapter(page, app: LiveApp) -> None:
    open_tab(page, "Deploy")
    expect(page.locator("#ft-deploy-current")).to_contain_text("nothing yet")
    pick_many(page, "ft-deploy-model", [ADAPTER])
    page.locator("#ft-deploy-note").locator("input, textarea").first.fill("knows the word")
    page.locator("#ft-deploy-promote").click()
    outcome = page.locator("#ft-deploy-outcome")
    expect(outcome).to_contain_text(f"Promoted {ADAPTER}: vLLM at http://127.0.0.1:")
    expect(outcome).to_contain_text(f"serves '{ADAPTER}' as 'production'")
    expect(page.locator("#ft-deploy-current")).to_contain_text(f"In production: {ADAPTER}")
    expect(page.locator("#ft-deploy-history")).to_contain_text("promote")
    assert app.query("SELECT model, is_rollback, note, created_by FROM promotions") == [
        {"model": ADAPTER, "is_rollback": 0, "note": "knows the word", "created_by": "admin"}
    ]
    readme_shot(page, "whole-11-deploy")
