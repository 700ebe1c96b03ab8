"""What every browser test shares: Debian's Chromium driven by Playwright, a fresh page per
test that records any dialog (user text run as script) and page error, and screenshots in
test-output/screenshots/ for a person to look at. Each test module provides an `app`;
conftest.py makes `page` a fixture of every module here. The walks that sign in several people
use one `browser` per module (a module fixture, also made one by conftest.py) and
the helpers below: sign in, open a tab, fill a field by its label, pick from a dropdown, wait
for a row of the app's database."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
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


@pytest.fixture(scope="module")
def browser():
    """One Chromium for a module whose test signs in several people (a context each)."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("needs Debian's chromium (make browser)")
    with playwright_api.sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(browser, app: LiveApp, name: str, password: str, role: str):
    """A new browser context (a person of their own) signed in as `name`."""
    page = new_page(browser, 1280, 900)  # 1280x900 viewport shots read well in the README
    page.goto(app.url)
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()
    expect(page.locator("#ft-user-line")).to_contain_text(f"Signed in as {name} ({role})")
    return page


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def visible(locator):
    """Tabs once opened stay in the page, hidden: fields with the same label in several tabs
    are told apart by which one shows."""
    return locator.filter(visible=True)


def fill_label(page, label: str, value: str) -> None:
    visible(page.get_by_label(label, exact=True)).fill(value)


def set_slider(page, label: str, value: str) -> None:
    visible(page.get_by_role("spinbutton", name=f"number input for {label}", exact=True)).fill(
        value
    )


def open_hyperparameters(page) -> None:
    """Unfold the Train tab's hyperparameters (folded under the preset, Queue job above)."""
    page.get_by_text("Hyperparameters (set by the preset", exact=False).click()
    expect(page.get_by_label("LoRA rank", exact=True).filter(visible=True)).to_be_visible()


def pick_many(page, elem_id: str, names: list[str]) -> None:
    """Type names into a dropdown that takes any value (one, or several for a multiselect)."""
    field = page.locator(f"#{elem_id} input")
    for name in names:
        field.fill(name)
        field.press("Enter")


def pick_option(page, elem_id: str, option: str) -> None:
    """Open a dropdown and click one of its listed options."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def focus_page_body(page) -> None:
    """Click the title so no text field has the focus (shortcuts are off while typing)."""
    page.locator("h1", has_text="ftapp").click()


def scroll_to(page, elem_id: str, above: int = 0) -> None:
    """Scroll so that the element is at the top of the window, `above` pixels below it."""
    page.evaluate(
        "([id, above]) => { document.getElementById(id).scrollIntoView({block: 'start'});"
        " window.scrollBy(0, -above); }",
        [elem_id, above],
    )


def readme_shot(page, name: str) -> None:
    """What the window shows (1280x900), the notices in the corner closed first."""
    page.evaluate(
        "document.querySelectorAll('[data-testid=toast-close]').forEach((b) => b.click())"
    )
    page.wait_for_timeout(300)  # the notices fade out
    shot(page, name, full_page=False)


def wait_for_row(app: LiveApp, sql: str, params: list, done: Callable[[dict], bool],
                 timeout_s: float, what: str) -> dict:  # fmt: skip
    """Poll the app's database until the first row of `sql` satisfies `done`."""
    deadline = time.monotonic() + timeout_s
    row = None
    while time.monotonic() < deadline:
        rows = app.query(sql, params)
        row = rows[0] if rows else None
        if row is not None and done(row):
            return row
        time.sleep(1)
    pytest.fail(f"{what} within {timeout_s:.0f} s (last: {row})\n{app.log_tail()}")


def run_evaluation(page, app: LiveApp, name: str, timeout_s: float) -> dict:
    """Press the Evaluate tab's Start (the form filled in) and wait for the run to end; its
    row. The run must end done."""
    page.locator("#ft-e-start").click()
    expect(page.locator("#ft-e-message")).to_contain_text(f"Started {name}")
    run = wait_for_row(app, "SELECT * FROM eval_runs WHERE name = ?", [name],
                       lambda row: row["status"] not in ("generating", "scoring"), timeout_s,
                       f"the evaluation run {name!r} did not finish")  # fmt: skip
    assert run["status"] == "done", run["error"]
    return run
