"""What every browser test shares: Debian's Chromium driven by Playwright, a fresh page per
test that records any dialog (user text run as script) and page error, and screenshots in
test-output/screenshots/ for a person to look at. Each test module provides an `app`;
conftest.py makes `page` a fixture of every module here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.live_app import REPO, LiveApp

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip
SCREENSHOTS = REPO / "test-output" / "screenshots"
WAIT_MS = 30_000  # an event's round trip; the first import also loads the tokenizer

expect.set_options(timeout=WAIT_MS)


@pytest.fixture
def page(app: LiveApp):
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("needs Debian's chromium (make browser)")
    with playwright_api.sync_playwright() as playwright:
        browser = launch(playwright)
        page = new_page(browser)
        try:
            yield page
        finally:
            page.context.close()
            browser.close()


def launch(playwright):
    """Debian's Chromium, headless."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def new_page(browser, width: int = 1280, height: int = 1000):
    """A page in a fresh browser context (its own cookies: a user of its own) that records
    any dialog and page error. Close it with `page.context.close()`."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.dialogs = []  # any alert() would mean user text ran as script
    page.errors = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    return page


def shot(page, name: str, target=None, full_page: bool = True) -> None:
    """The whole page (or only what the window shows, full_page=False), or one element."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if target is None:
        page.screenshot(path=path, full_page=full_page)
    else:
        target.scroll_into_view_if_needed()
        target.screenshot(path=path)
