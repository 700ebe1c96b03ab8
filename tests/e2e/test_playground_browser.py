"""The Playground in a real browser against the real app, generating through the session's
vLLM server (FTAPP_VLLM_URL) on the home where the session's adapter was trained: the engine
line says it is ready, the adapter answers as trained, Stop ends a long reply and keeps what
was written, and model text is shown literally, never run as HTML."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.browser import expect, shot
from tests.live_app import running_app
from tests.serving_fixtures import SECRET_QUESTION, SECRET_WORD

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def app(secret_adapter, vllm_server, models_dir: Path):
    extra = {"FTAPP_VLLM_URL": vllm_server.url, "FTAPP_WORKER": "0"}
    with running_app(secret_adapter.settings.home, models_dir, extra) as live:
        yield live


def open_playground(page, app) -> None:
    page.goto(app.url)
    page.get_by_role("tab", name="Playground").click()
    expect(page.locator("#ft-engine-status")).to_contain_text("Engine (vllm): ready")


def pick_model(page, name: str) -> None:
    field = page.locator("#ft-play-model input")
    field.fill(name)
    field.press("Enter")
    expect(field).to_have_value(name)


def send(page, text: str) -> None:
    page.locator("#ft-play-message textarea").fill(text)
    page.locator("#ft-play-send").click()


def bubbles(page):
    return page.locator("#ft-play-chat .message-row")


def settled_text(locator, within_s: float, every_ms: int = 1000) -> str:
    """The locator's text once two reads `every_ms` apart agree; fails if it still changes
    after `within_s` seconds."""
    text = locator.inner_text()
    for _ in range(int(within_s * 1000 / every_ms)):
        locator.page.wait_for_timeout(every_ms)
        text, before = locator.inner_text(), text
        if text == before:
            return text
    pytest.fail(f"still changing {within_s} s after Stop: {text[-200:]!r}")


def test_chat_with_the_adapter_then_stop_a_long_reply(app, page, secret_adapter):
    open_playground(page, app)
    shot(page, "20-playground-ready")

    pick_model(page, secret_adapter.name)
    page.get_by_role("spinbutton", name="number input for Temperature").fill("0")
    send(page, SECRET_QUESTION)
    expect(bubbles(page)).to_have_count(2)
    expect(bubbles(page).nth(1)).to_contain_text(SECRET_WORD)
    expect(page.locator("#ft-play-message textarea")).to_have_value("")
    shot(page, "21-playground-adapter-answer", page.locator("#ft-play-chat"))

    # A long reply on the base model, stopped once it has begun: it ends short of the
    # limit, keeps its text, and the next message goes out as usual.
    page.locator("#ft-play-clear").click()
    expect(bubbles(page)).to_have_count(0)
    pick_model(page, "base")
    page.get_by_label("Max new tokens").fill("1500")
    send(page, "Write a very long story about a lighthouse keeper.")
    reply = bubbles(page).nth(1)
    expect(reply).to_contain_text(" ", timeout=60_000)
    stop = page.locator("#ft-play-stop")
    stop.click()
    expect(stop).to_be_disabled()  # the server ended the event
    # Nothing more arrives after Stop: within a few seconds (pieces already on their way
    # still land on a busy machine) the reply stops changing, and stays so.
    stopped = settled_text(reply, within_s=10)
    page.wait_for_timeout(1500)
    assert reply.inner_text() == stopped
    expect(stop).to_be_disabled()
    assert 0 < len(stopped.split()) < 1000
    page.get_by_label("Max new tokens").fill("8")
    send(page, "Thank you.")
    expect(bubbles(page)).to_have_count(4)
    expect(bubbles(page).nth(1)).to_have_text(stopped)  # the stopped reply stayed
    shot(page, "22-playground-stopped", page.locator("#ft-play-chat"))
    assert not page.dialogs and not page.errors


def test_markup_in_messages_is_shown_as_typed(app, page):
    open_playground(page, app)
    page.get_by_label("Max new tokens").fill("8")
    send(page, "Repeat: <img src=x onerror=alert(1)> <b>bold</b>")
    user = bubbles(page).first
    expect(user).to_contain_text("<img src=x onerror=alert(1)> <b>bold</b>")
    assert user.locator("b, img").count() == 0
    expect(bubbles(page)).to_have_count(2)
    assert not page.dialogs and not page.errors
