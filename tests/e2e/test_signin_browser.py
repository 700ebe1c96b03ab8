"""Signing in, in a real browser: Gradio's sign-in page, a reviewer who sees only the About and
Arena tabs and can judge a free battle, an admin who sees every tab, and signing out. The app
runs with password users on the echo backend (the browser is what is tested here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.arena.conftest import running_arena_app
from tests.e2e.browser import expect, shot

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PASSWORDS = {"alice": "alice-secret-1", "rita": "rita-secret-1"}
ADMIN_TABS = ("Data", "Train", "Playground", "Leaderboard")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path):
    users = {"alice": ("admin", PASSWORDS["alice"]), "rita": ("reviewer", PASSWORDS["rita"])}
    with running_arena_app(tmp_path_factory.mktemp("signin") / "home", models_dir, users) as live:
        yield live


def sign_in(page, app, name: str, password: str) -> None:
    page.goto(app.url)
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()


def test_a_wrong_password_stays_on_the_sign_in_page(page, app):
    sign_in(page, app, "rita", "not the password")
    expect(page.get_by_text("Incorrect Credentials")).to_be_visible()
    shot(page, "40-sign-in-refused")


def test_a_reviewer_sees_the_arena_and_nothing_else(page, app):
    sign_in(page, app, "rita", PASSWORDS["rita"])
    expect(page.locator("#ft-user-line")).to_contain_text("Signed in as rita (reviewer)")
    arena = page.get_by_role("tab", name="Arena", exact=True)
    expect(arena).to_be_visible()
    for name in ADMIN_TABS:
        expect(page.get_by_role("tab", name=name, exact=True)).to_have_count(0)
    expect(page.get_by_role("tab", name="Manage")).to_have_count(0)
    page.get_by_role("tab", name="Free battle").click()
    page.locator("#ft-f-message textarea").fill("What is a tangerine?")
    page.locator("#ft-f-send").click()
    expect(page.locator("#ft-f-vote-a")).to_be_enabled()
    page.locator("#ft-f-vote-a").click()
    expect(page.locator("#ft-f-reveal")).to_contain_text("Your vote")
    page.wait_for_timeout(3000)  # longer than the admin tabs' polling: nothing polls for rita
    expect(page.get_by_text("needs an admin")).to_have_count(0)
    shot(page, "41-reviewer-arena")
    assert app.query("SELECT reviewer FROM votes") == [{"reviewer": "rita"}]
    page.locator("#ft-sign-out").click()
    expect(page.get_by_label("username")).to_be_visible()
    assert not page.dialogs and not page.errors


def test_an_admin_sees_every_tab(page, app):
    sign_in(page, app, "alice", PASSWORDS["alice"])
    expect(page.locator("#ft-user-line")).to_contain_text("Signed in as alice (admin)")
    for name in (*ADMIN_TABS, "Arena"):
        expect(page.get_by_role("tab", name=name, exact=True)).to_be_visible()
    page.get_by_role("tab", name="Arena", exact=True).click()
    expect(page.get_by_role("tab", name="Manage")).to_be_visible()
    page.get_by_role("tab", name="About", exact=True).click()
    expect(page.locator("#ft-export-everything")).to_be_visible()
    shot(page, "42-admin-about")
