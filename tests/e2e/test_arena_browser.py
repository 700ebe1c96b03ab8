"""The Arena and the Leaderboard in a real browser against the real app, generating through the
session's vLLM server: an admin adds a prompt-engineered contestant in Manage; a reviewer
judges a pre-generated session with the keyboard (1-4 vote, n next), sees the names only
after voting, and sees their progress; a free battle streams both answers with the votes
already open; markup is shown as typed; the leaderboard shows the votes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftapp.arena.contestants import add_prompt_variant, set_pool
from ftapp.arena.prompts import Prompt
from ftapp.arena.sessions import create_session
from ftapp.services import Services
from ftapp.serving.backend import Sampling
from tests.e2e.browser import expect, shot
from tests.live_app import running_app
from tests.serving_fixtures import SECRET_QUESTION, home_with_adapter

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CONTESTANTS = ("base", "secret", "terse")


@pytest.fixture(scope="module")
def app(tmp_path_factory, secret_adapter, vllm_server, models_dir: Path):
    settings = home_with_adapter(tmp_path_factory.mktemp("arena-e2e") / "home", models_dir,
                                 secret_adapter)  # fmt: skip
    services = Services(settings)
    with services.db() as db:
        add_prompt_variant(db, services.served_base, "terse", "Answer in five words.", user="t")
        set_pool(db, services.served_base, list(CONTESTANTS), "t")
        create_session(
            db, services.served_base, name="Secret check",
            prompts=[Prompt([{"role": "user", "content": SECRET_QUESTION}]),
                     Prompt([{"role": "user", "content": "Show <b>bold</b> <i>markup</i>"}])],
            source="test", contestants=["base", "secret"],
            sampling=Sampling(temperature=0, max_new_tokens=16),
            instructions="Prefer the answer that **knows the secret word**.", user="t",
        )  # fmt: skip
    extra = {"FTAPP_VLLM_URL": vllm_server.url, "FTAPP_WORKER": "0",
             "FTAPP_ARENA_MAX_NEW_TOKENS": "48"}  # fmt: skip
    with running_app(settings.home, models_dir, extra) as live:
        yield live


def open_arena(page, app, mode: str) -> None:
    page.goto(app.url)
    page.get_by_role("tab", name="Arena").click()
    page.get_by_role("tab", name=mode).click()


def test_a_reviewer_judges_a_session_with_the_keyboard(app, page):
    # The app pre-generates the session's answers in the background, then opens it.
    for _ in range(240):
        if app.query("SELECT status FROM eval_sessions")[0]["status"] == "open":
            break
        page.wait_for_timeout(500)
    open_arena(page, app, "Evaluation sessions")
    page.get_by_role("button", name="↻ Refresh").first.click()
    expect(page.locator("#ft-s-instructions")).to_contain_text("knows the secret word")
    expect(page.locator("#ft-s-progress")).to_contain_text("You judged 0 of 2")
    expect(page.locator("#ft-s-chat-a .message-row")).to_have_count(2)
    page_text = page.locator("body").inner_text()
    assert "secret\n" not in page_text and "A was" not in page_text
    shot(page, "30-arena-session-battle")

    page.locator("body").click(position={"x": 5, "y": 5})  # focus outside any text field
    page.keyboard.press("1")
    reveal = page.locator("#ft-s-reveal")
    expect(reveal).to_contain_text("A was")
    expect(reveal).to_contain_text("Your vote: A is better")
    expect(page.locator("#ft-s-vote-b")).to_be_disabled()
    expect(page.locator("#ft-s-progress")).to_contain_text("You judged 1 of 2")
    shot(page, "31-arena-session-revealed")

    page.keyboard.press("n")
    expect(reveal).not_to_contain_text("A was")
    page.keyboard.press("3")
    expect(reveal).to_contain_text("Your vote: Tie")
    page.keyboard.press("n")
    expect(reveal).to_contain_text("judged every battle")
    votes = app.query("SELECT choice FROM votes ORDER BY id")
    assert [v["choice"] for v in votes] == ["a", "tie"]
    # The markup prompt was one of the two battles: shown as typed, never as HTML.
    assert page.locator("#ft-s-chat-a b, #ft-s-chat-a i").count() == 0
    assert not page.dialogs and not page.errors


def test_a_free_battle_streams_and_can_be_voted_on_at_once(app, page):
    open_arena(page, app, "Free battle")
    page.locator("#ft-f-message textarea").fill(
        "Write a long story about <script>x</script> a cat."
    )
    page.locator("#ft-f-send").click()
    expect(page.locator("#ft-f-chat-a .message-row")).to_have_count(2)
    expect(page.locator("#ft-f-vote-a")).to_be_enabled()  # voting doesn't wait for the stream
    expect(page.locator("#ft-f-chat-a .message-row").first).to_contain_text("<script>x</script>")
    page.locator("#ft-f-vote-b").click()
    reveal = page.locator("#ft-f-reveal")
    expect(reveal).to_contain_text("A was")
    battle = app.query("SELECT * FROM battles WHERE session_id IS NULL")[0]
    expect(reveal).to_contain_text(f"A was {battle['model_a']}, B was {battle['model_b']}")
    assert {battle["model_a"], battle["model_b"]} <= set(CONTESTANTS)
    shot(page, "32-arena-free-battle")
    assert not page.dialogs and not page.errors


def test_an_admin_adds_a_contestant_and_sees_the_leaderboard(app, page):
    open_arena(page, app, "Manage")
    page.get_by_text("Add a prompt-engineered contestant").click()
    page.locator("#ft-m-variant-name input, #ft-m-variant-name textarea").first.fill("polite")
    page.locator("#ft-m-variant-prompt textarea").fill("Always say please.")
    page.locator("#ft-m-add-variant").click()
    expect(page.locator("#ft-m-report")).to_contain_text("Added contestant polite")
    assert app.query("SELECT system_prompt FROM prompt_variants WHERE name = 'polite'") == [
        {"system_prompt": "Always say please."}
    ]
    page.get_by_role("tab", name="Leaderboard").click()
    page.locator("#ft-lb-refresh").click()
    n_votes = app.query("SELECT COUNT(*) AS n FROM votes")[0]["n"]
    expect(page.locator("#ft-lb-summary")).to_contain_text(f"{n_votes} votes")
    expect(page.locator("#ft-lb-ratings")).to_contain_text("base")
    shot(page, "33-leaderboard")
    assert not page.dialogs and not page.errors
