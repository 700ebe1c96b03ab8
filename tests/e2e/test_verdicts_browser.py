"""Reviewers checked, in a real browser: an admin marks a battle as a check and sets a
session's minimum accuracy in Manage, and the Leaderboard shows each reviewer's judging with
its flags and the ratings without the reviewer below the minimum. The votes are cast through
the core beforehand (one careful reviewer, one who always clicks A); the echo backend answers,
as this is about the pages, not the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftapp.arena.generation import generate_pending
from ftapp.arena.prompts import Prompt
from ftapp.arena.sessions import create_session
from ftapp.services import Services
from ftapp.serving.backend import Sampling
from ftapp.settings import Settings
from tests.arena.conftest import running_arena_app, vote_in_turns
from tests.e2e.browser import expect, open_tab, pick_many, readme_shot

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SESSION = "checked"


def _chat(model, messages, sampling):
    pirate = messages[0]["role"] == "system"
    yield ("Arr! " if pirate else "") + "a few words on " + messages[-1]["content"]


@pytest.fixture(scope="module")
def app(tmp_path_factory, models_dir: Path):
    with running_arena_app(tmp_path_factory.mktemp("verdicts") / "home", models_dir) as live:
        services = Services(Settings(home=live.home, backend="echo"))
        prompts = [Prompt([{"role": "user", "content": f"question {i}"}]) for i in range(24)]
        with services.db() as db:
            session = create_session(
                db, services.served_base, name=SESSION, prompts=prompts, source="test",
                contestants=["base", "pirate"], sampling=Sampling(max_new_tokens=16),
                overlap=1, user="admin",
            )  # fmt: skip
        generate_pending(services.db, _chat, workers=2)
        with services.db() as db:
            vote_in_turns(db, session.id, ["ann", "carl"], lambda who, battle: "a" if who == "carl"
                          else "a" if battle.model_a == "pirate" else "b")  # fmt: skip
        yield live


def test_an_admin_marks_a_check_and_the_leaderboard_drops_the_careless(app, page):
    # A battle carl judged with pirate on the right: he clicked A, the check says B.
    (target,) = app.query(
        "SELECT b.id FROM battles b JOIN votes v ON v.battle_id = b.id WHERE v.reviewer = "
        "'carl' AND b.model_b = 'pirate' ORDER BY b.id LIMIT 1"
    )
    page.goto(app.url)
    open_tab(page, "Arena")
    page.get_by_role("tab", name="Manage").click()
    pick_many(page, "ft-m-session", [SESSION])
    page.get_by_text("Checks: battles whose better side is known").click()
    pick_many(page, "ft-m-check-battle", [f"#{target['id']}"])
    expect(page.locator("#ft-m-check-preview")).to_contain_text("Arr!")
    page.locator("#ft-m-check-better").get_by_label("B").check()
    page.locator("#ft-m-check-mark").click()
    report = page.locator("#ft-m-report")
    expect(report).to_contain_text(f"Battle #{target['id']} is a check: B is the better side")
    page.locator("#ft-m-min-accuracy input, #ft-m-min-accuracy textarea").first.fill("80%")
    page.locator("#ft-m-min-accuracy-set").click()
    expect(report).to_contain_text("without reviewers below 80% on checks")
    assert app.query("SELECT gold_choice FROM battles WHERE id = ?", [target["id"]]) == [
        {"gold_choice": "b"}
    ]

    open_tab(page, "Leaderboard")
    pick_many(page, "ft-lb-scope", [SESSION])
    checked = page.locator("#ft-lb-checked")
    expect(checked).to_contain_text("carl")
    expect(checked).to_contain_text("0 of 1")  # right on no check
    expect(checked).to_contain_text("chose 'a' in")
    expect(page.locator("#ft-lb-trusted")).to_contain_text("Below 80% on checks: carl")
    trusted = page.locator("#ft-lb-trusted-ratings")
    expect(trusted).to_be_visible()
    expect(trusted).to_contain_text("pirate")
    page.locator("#ft-lb-checked").scroll_into_view_if_needed()
    readme_shot(page, "verdicts-reviewers-checked")
    assert not page.errors
