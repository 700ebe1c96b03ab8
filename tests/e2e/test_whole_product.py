"""The whole product in a real browser (Playwright driving Debian's Chromium), following the
README's five-minute tour on the sample data that ships with ftapp, against the app started the
way the README starts it: users added with the real CLI, then `python app.py` with the default
backend (the app starts its own vLLM CPU server) and the training worker beside it.

The walk, each step checked on the page and in the app's SQLite file:

1. the admin signs in;
2. Data: uploads the sample (a bike shop's 120 support replies) with a rude row and two bad
   rows added (a cut JSON line, a missing field); the report lists the bad rows by line; none
   is stored;
3. reviews: accepts with the keyboard, rejects and tags with buttons, accepts the rest with
   "Accept all matching", splits 60/10/30 as the tour says (36 to test on), freezes v1;
4. Train: the version already picked, the "quick CPU demo" preset, Queue job (no scrolling);
   the step counter moves; the browser is closed; the worker finishes the job anyway; a new
   browser context sees it succeeded, its training and validation curves, its checkpoints;
5. Playground: the adapter's reply names it; Compare side by side, base and the adapter
   answer one message, each pane labelled;
6. Arena -> Manage: a session on v1's test split (preselected), base against the adapter,
   overlap 2, for ann and bob; the page says how many votes a small preference needs; the
   app generates the answers and opens it;
7. ann (keyboard) and bob (clicks), each in their own browser context, judge every battle as
   the instructions say (the answer in the shop's voice wins), until the page says they
   judged every battle;
8. Leaderboard: a decided verdict, the adapter beats base; the decided votes downloaded as a
   preference dataset that matches the votes;
9. Evaluate: a run base vs adapter on the test split, whose report appears by itself, opening
   with "better on ROUGE-L"; Deploy: the adapter promoted to production.

The tour's promise is checked here: on the shipped sample, it ends with a verdict. Every tab
leaves a viewport screenshot `whole-NN-*.png` in test-output/screenshots/ (the README's
pictures in docs/screenshots/ are copied from them).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ftapp.demo import OPENING, SAMPLE_FILE
from tests.e2e.browser import (
    expect,
    fill_label,
    focus_page_body,
    open_tab,
    pick_many,
    readme_shot,
    run_evaluation,
    scroll_to,
    set_slider,
    visible,
    wait_for_row,
)
from tests.e2e.browser import sign_in as sign_in_as
from tests.live_app import LiveApp, running_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

USERS = {"admin": ("admin", "admin-secret-1"), "ann": ("reviewer", "ann-secret-1"),
         "bob": ("reviewer", "bob-secret-1")}  # fmt: skip
DATASET = "support_replies"  # proposed from the file's name
VERSION = f"{DATASET}@v1"
ADAPTER = f"{DATASET}-v1-job1"  # the name a job gets when none is given
SESSION = "Shop voice review"
EVAL_RUN = "shop voice eval"
QUESTION = "Do you repair electric bikes?"  # the tour's question (not in the sample)
TAGGED = "Are helmets included when I buy a bike?"  # found by searching, tagged in the review
RUDE = ("Say something rude.", "No.")  # imported, then rejected in the review
CUT_LINE, MISSING_LINE = 3, 8  # the bad rows' line numbers in the file
SAMPLE = [json.loads(line) for line in SAMPLE_FILE.read_text(encoding="utf-8").splitlines()]
MAX_NEW_TOKENS = "48"  # enough for a reply's opening; short keeps generation quick on a CPU
# Guards against hanging, not speed checks: vLLM, a training job and generation on 2 cores.
ENGINE_TIMEOUT_MS = 300_000
TRAIN_TIMEOUT_S = 1200
GENERATION_TIMEOUT_S = 900


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
    # default worker. FTAPP_SERVE_THREADS=1: the server idles while the job trains, and the
    # job keeps its default of every core, as in the tour.
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
    """The file to import: the shipped sample with a rude row added, and two bad rows (a cut
    JSON line, a row missing its answer) at CUT_LINE and MISSING_LINE. Named like the sample,
    so the dataset's proposed name is the tour's."""
    lines = [json.dumps(row, ensure_ascii=False) for row in SAMPLE]
    lines.append(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": RUDE[0]},
                    {"role": "assistant", "content": RUDE[1]},
                ]
            }
        )
    )
    lines.insert(CUT_LINE - 1, '{"messages": [{"role": "user", "content": "What are your')
    lines.insert(MISSING_LINE - 1, json.dumps(
        {"messages": [{"role": "user", "content": "Do you fix unicycles?"}]}))  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sideways_scroll(locator) -> bool:
    """Whether anything inside the element is cut off on the right and must be scrolled to."""
    return locator.evaluate(
        "(el) => [...el.querySelectorAll('*')].some((n) => n.scrollWidth > n.clientWidth + 1"
        " && ['auto', 'scroll'].includes(getComputedStyle(n).overflowX))"
    )


def in_shop_voice(answer: str) -> bool:
    return answer.strip().lower().startswith(OPENING.lower())


def expected_choice(prompt: str, answer_a: str, answer_b: str) -> str:
    """How the reviewers judge (the session's instructions): the answer in the shop's voice
    (it opens with "Thanks for reaching out!") wins; if both or neither are, it's a tie."""
    a, b = in_shop_voice(answer_a), in_shop_voice(answer_b)
    return "tie" if a == b else ("a" if a else "b")


# --- the walk ------------------------------------------------------------------------------


def test_the_whole_product(app: LiveApp, browser, tmp_path: Path):
    admin = sign_in(browser, app, "admin")
    import_examples(admin, app, write_examples(tmp_path / "support_replies.jsonl"))
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
    expect(name_box).to_have_value(DATASET)  # proposed from the file name
    page.locator("#ft-import-button").click()
    n_good = len(SAMPLE) + 1
    report = page.locator("#ft-import-report")
    expect(report).to_contain_text(f"{n_good} of {n_good + 2} rows imported into '{DATASET}'")
    expect(report).to_contain_text("2 rejected")
    rejected = visible(page.locator(".block").filter(
        has=page.get_by_text("Rejected rows", exact=True))).last  # fmt: skip
    expect(rejected).to_contain_text(f"line {CUT_LINE}")
    expect(rejected).to_contain_text("invalid JSON")
    expect(rejected).to_contain_text(f"line {MISSING_LINE}")
    expect(rejected).to_contain_text("no assistant")

    # Nothing bad was stored: the good rows only, from the lines around the bad ones.
    stored = examples(app)
    assert sorted(prompt_of(e) for e in stored) == sorted(
        [*(row["messages"][0]["content"] for row in SAMPLE), RUDE[0]]
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
    search.fill("helmets included")
    search.press("Enter")
    expect(page.locator("#ft-edit-prompt textarea")).to_have_value(TAGGED)
    page.locator("#ft-edit-tags textarea").fill("safety")
    page.locator("#ft-save").click()
    expect(page.locator("#ft-review-table")).to_contain_text("safety")
    tagged = by_prompt(app, TAGGED)
    assert (json.loads(tagged["tags_json"]), tagged["status"]) == (["safety"], "pending")

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

    # Split 60/10/30 as the tour says: 36 replies to test on, enough for a verdict.
    for label, ratio in (("Train", "0.6"), ("Validation", "0.1"), ("Test", "0.3")):
        fill_label(page, label, ratio)
    page.locator("#ft-split").click()
    n_accepted = n_good - 1
    n_validation, n_test = round(n_accepted * 0.1), round(n_accepted * 0.3)
    n_train = n_accepted - n_validation - n_test
    assert (n_train, n_validation, n_test) == (72, 12, 36)
    expect(page.locator("#ft-stats")).to_contain_text(f"{n_train} / {n_validation} / {n_test} / 0")
    test_prompts = [prompt_of(e) for e in examples(app) if e["split"] == "test"]
    assert len(test_prompts) == n_test and QUESTION not in test_prompts
    assert by_prompt(app, RUDE[0])["split"] is None
    expect(page.locator("#ft-review-table")).to_contain_text("test")  # the split column
    scroll_to(page, "ft-review-progress", above=60)
    readme_shot(page, "whole-02-data-review")

    page.get_by_label("Version note", exact=True).fill("the shop's voice, first cut")
    page.locator("#ft-freeze").click()
    versions = visible(page.locator(".block").filter(
        has=page.get_by_text("Versions", exact=True))).last  # fmt: skip
    expect(versions).to_contain_text("v1")
    (version,) = app.query("SELECT * FROM dataset_versions")
    assert (version["n_examples"], version["n_train"], version["n_test"]) == (
        n_accepted, n_train, n_test,
    )  # fmt: skip
    assert (version["note"], version["created_by"]) == ("the shop's voice, first cut", "admin")
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
    # The tour's preset, already chosen on a CPU; Queue job is in view, no scrolling.
    expect(page.locator("#ft-train-preset input")).to_have_value("quick CPU demo")
    queue = page.locator("#ft-queue")
    box = queue.bounding_box()
    assert box and box["y"] + box["height"] <= page.viewport_size["height"], box
    readme_shot(page, "whole-04-train-form")
    queue.click()
    status = page.locator("#ft-job-status")
    expect(status).to_contain_text(f"#1 {ADAPTER}")
    # Queued (the model takes seconds to load before step 1): it can be cancelled.
    expect(page.locator("#ft-cancel")).to_be_enabled()
    (job,) = app.query("SELECT * FROM jobs")
    config = json.loads(job["config_json"])
    assert (job["created_by"], config["dataset_version"], job["name"]) == (
        "admin", VERSION, ADAPTER,
    )  # fmt: skip
    assert {key: config[key] for key in ("method", "lora_rank", "learning_rate", "max_steps",
                                         "max_length", "eval_steps")} == {
        "method": "sft", "lora_rank": 8, "learning_rate": 3e-4, "max_steps": 30,
        "max_length": 256, "eval_steps": 10,
    }  # fmt: skip
    # The page follows the job on its own (a timer reads SQLite): the step counter moves.
    expect(status).to_contain_text(re.compile(r"step ([5-9]|[12]\d)/30"),
                                   timeout=TRAIN_TIMEOUT_S * 1000)  # fmt: skip
    assert app.query("SELECT COUNT(*) AS n FROM job_metrics WHERE kind = 'train'")[0]["n"] >= 1


def see_the_finished_job(page, app: LiveApp) -> None:
    open_tab(page, "Train")
    status = page.locator("#ft-job-status")
    expect(status).to_contain_text(f"#1 {ADAPTER}: succeeded")
    expect(status).to_contain_text("step 30/30")
    expect(page.locator("#ft-cancel")).to_be_disabled()  # finished: nothing to cancel
    # Both curves, drawn from SQLite: the training loss and the validation loss.
    expect(page.locator("#ft-loss-plot")).to_contain_text("Loss: training and validation")
    variants = page.locator("#ft-variants")
    expect(variants).to_contain_text(f"{ADAPTER}/step-10")
    rows = app.query("SELECT name, kind FROM model_variants ORDER BY name")
    assert {"name": ADAPTER, "kind": "adapter"} in rows
    assert {"name": f"{ADAPTER}/step-10", "kind": "checkpoint"} in rows
    scroll_to(page, "ft-job-status", above=120)
    readme_shot(page, "whole-05-train-done")


def chat_in_the_playground(page, app: LiveApp) -> None:
    open_tab(page, "Playground")
    engine = page.locator("#ft-engine-status")
    expect(engine).to_contain_text("Engine (vllm): ready", timeout=ENGINE_TIMEOUT_MS)
    set_slider(page, "Temperature (0: greedy)", "0")
    fill_label(page, "Max new tokens", MAX_NEW_TOKENS)

    # The tour's question to the adapter: Enter sends, and the reply names its model.
    pick_many(page, "ft-play-model", [ADAPTER])
    expect(page.locator("#ft-play-model input")).to_have_value(ADAPTER)
    box = page.locator("#ft-play-message textarea")
    box.fill(QUESTION)
    box.press("Enter")
    expect(bubbles(page, "ft-play-chat")).to_have_count(2)
    expect(page.locator("#ft-play-chat .ft-reply-model")).to_have_text(ADAPTER)
    expect(page.locator("#ft-play-stop")).to_be_disabled(timeout=60_000)  # the reply is in

    # Side by side: base and the adapter answer the same message with the same settings.
    page.get_by_role("tab", name="Compare side by side").click()
    pick_many(page, "ft-cmp-models", ["base", ADAPTER])
    compare = page.locator("#ft-cmp-message textarea")
    compare.fill(QUESTION)
    compare.press("Enter")
    for pane, model in (("ft-cmp-chat-0", "base"), ("ft-cmp-chat-1", ADAPTER)):
        expect(bubbles(page, pane)).to_have_count(2)
        expect(page.locator(f"#{pane} .ft-reply-model")).to_have_text(model)
    expect(page.locator("#ft-cmp-stop")).to_be_disabled(timeout=60_000)
    page.wait_for_timeout(1500)  # the stream is paced: let its last update in
    base_reply = bubbles(page, "ft-cmp-chat-0").nth(1).inner_text()
    tuned_reply = bubbles(page, "ft-cmp-chat-1").nth(1).inner_text()
    assert base_reply != tuned_reply  # the adapter answers differently from base
    readme_shot(page, "whole-06-playground")


def create_session(page, app: LiveApp) -> list[dict]:
    open_tab(page, "Arena")
    page.get_by_role("tab", name="Manage").click()
    page.locator("#ft-m-session-name textarea, #ft-m-session-name input").first.fill(SESSION)
    page.locator("#ft-m-overlap input").fill("2")
    visible(page.get_by_label("Instructions for reviewers")).fill(
        "Prefer the answer written in **the shop's voice**: it opens with \"Thanks for "
        'reaching out!". If both or neither are, call it a tie.'
    )
    pick_many(page, "ft-m-contestants", ["base", ADAPTER])
    expect(page.locator("#ft-m-version input")).to_have_value(VERSION)  # the newest, preselected
    visible(page.get_by_label("Who may take part (comma-separated; empty: everyone)")).fill(
        "ann, bob"
    )
    set_slider(page, "Temperature", "0")
    fill_label(page, "Max new tokens", MAX_NEW_TOKENS)
    page.locator("#ft-m-create").click()
    report = page.locator("#ft-m-report")
    expect(report).to_contain_text(f"Created session {SESSION}")
    # 36 prompts judged twice: said up front to be short of what a small preference needs.
    expect(report).to_contain_text("each pair of contestants gets at most 72 votes")

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
    expect(page.locator("#ft-s-instructions")).to_contain_text("the shop's voice")
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
    expect(reveal).to_contain_text("You judged every battle of this session")
    expect(page.locator("#ft-s-next")).to_be_disabled()
    expect(progress).to_contain_text(f"You judged {len(battles)} of {len(battles)}")


def check_votes(app: LiveApp, battles: list[dict]) -> None:
    """Both reviewers voted once on every battle, as the instructions say given its text."""
    votes = app.query("SELECT battle_id, reviewer, choice FROM votes ORDER BY id")
    assert sorted((v["battle_id"], v["reviewer"]) for v in votes) == sorted(
        (b["id"], name) for b in battles for name in ("ann", "bob")
    )
    expected = {b["id"]: expected_choice(*battle_text(b)) for b in battles}
    assert {(v["battle_id"], v["choice"]) for v in votes} == set(expected.items())
    # The adapter answers in the shop's voice where base does not: most battles are decided.
    decided = [choice for choice in expected.values() if choice != "tie"]
    assert len(decided) >= len(battles) // 3, [battle_text(b) for b in battles]


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
    # The tour's promise: on the shipped sample, the reviewers' votes decide.
    expect(page.locator("#ft-lb-verdicts")).to_contain_text(f"{ADAPTER} beats base")
    assert not sideways_scroll(ratings), "the ratings table scrolls sideways"
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
    assert all(in_shop_voice(row["chosen"][0]["content"]) for row in rows)


def evaluate_base_against_the_adapter(page, app: LiveApp) -> None:
    open_tab(page, "Evaluate")
    page.locator("#ft-e-name input, #ft-e-name textarea").first.fill(EVAL_RUN)
    pick_many(page, "ft-e-contestants", ["base", ADAPTER])
    expect(page.locator("#ft-e-version input")).to_have_value(VERSION)  # preselected
    fill_label(page, "Max new tokens", MAX_NEW_TOKENS)
    run = run_evaluation(page, app, EVAL_RUN, GENERATION_TIMEOUT_S)
    answers = app.query("SELECT contestant, status, answer, scores_json FROM eval_answers "
                        "WHERE run_id = ?", [run["id"]])  # fmt: skip
    n_test = app.query("SELECT n_test FROM dataset_versions")[0]["n_test"]
    assert len(answers) == 2 * n_test and {a["status"] for a in answers} == {"done"}
    # No click: the report comes by itself, a verdict line first. The tour ends decided.
    summary = page.locator("#ft-e-summary")
    expect(summary).to_contain_text(f"{ADAPTER} against base: better on ROUGE-L", timeout=60_000)
    expect(summary).to_contain_text("baseline base")
    report = page.locator("#ft-e-report")
    expect(report).to_contain_text("rouge_l")
    expect(report).to_contain_text(ADAPTER)
    scroll_to(page, "ft-e-runs", above=80)
    readme_shot(page, "whole-10-evaluate")


def promote_the_adapter(page, app: LiveApp) -> None:
    open_tab(page, "Deploy")
    expect(page.locator("#ft-deploy-current")).to_contain_text("nothing yet")
    pick_many(page, "ft-deploy-model", [ADAPTER])
    note = "speaks in the shop's voice"
    page.locator("#ft-deploy-note").locator("input, textarea").first.fill(note)
    page.locator("#ft-deploy-promote").click()
    outcome = page.locator("#ft-deploy-outcome")
    expect(outcome).to_contain_text(f"Promoted {ADAPTER}: vLLM at http://127.0.0.1:")
    expect(outcome).to_contain_text(f"serves '{ADAPTER}' as 'production'")
    expect(page.locator("#ft-deploy-current")).to_contain_text(f"In production: {ADAPTER}")
    expect(page.locator("#ft-deploy-history")).to_contain_text("promote")
    assert app.query("SELECT model, is_rollback, note, created_by FROM promotions") == [
        {"model": ADAPTER, "is_rollback": 0, "note": note, "created_by": "admin"}
    ]
    readme_shot(page, "whole-11-deploy")
