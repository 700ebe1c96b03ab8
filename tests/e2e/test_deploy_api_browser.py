"""Production for a team's services, in a real browser: an admin makes an API key in the Deploy
tab (shown once), a service calls production with it through the real `openai` client, the
call shows up in the monitoring per key, and a canary release is started and rolled back from
the tab. The echo backend answers (this is about the page and the API, not the model)."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from ftapp.deploy.production import promote
from ftapp.names import PRODUCTION
from ftapp.services import Services
from ftapp.settings import Settings
from tests.arena.conftest import running_arena_app
from tests.e2e.browser import expect, open_tab, pick_many, readme_shot, scroll_to
from tests.serving_fixtures import add_adapter_variant

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def app(tmp_path_factory, models_dir: Path):
    with running_arena_app(tmp_path_factory.mktemp("deploy-api") / "home", models_dir) as live:
        settings = Settings(home=live.home, backend="echo")
        # A stand-in adapter (the echo backend reads only its config) to try as a canary.
        folder = live.home / "adapters" / "secret"
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
        add_adapter_variant(settings, "secret", folder)
        services = Services(settings)
        with services.db() as db:
            promote(db, services.served_base, "base", "admin")
        yield live


def test_a_key_from_the_tab_calls_production_and_the_tab_sees_it(app, page):
    page.goto(app.url)
    open_tab(page, "Deploy")
    expect(page.locator("#ft-deploy-endpoint")).to_contain_text(f"{app.url}v1")
    scroll_to(page, "ft-keys-name", above=80)
    page.locator("#ft-keys-name input, #ft-keys-name textarea").first.fill("billing-bot")
    page.locator("#ft-keys-create").click()
    made = page.locator("#ft-keys-made")
    expect(made).to_contain_text("shown this once")
    secret = made.locator("code").inner_text()
    assert secret.startswith("ftk-")
    expect(page.locator("#ft-keys-table")).to_contain_text("billing-bot")
    readme_shot(page, "deploy-api-keys")

    api = openai.OpenAI(base_url=f"{app.url}v1", api_key=secret, max_retries=0)
    answer = api.chat.completions.create(model=PRODUCTION, messages=[
        {"role": "user", "content": "Where is my invoice?"}])  # fmt: skip
    assert answer.choices[0].message.content

    page.locator("#ft-deploy-by-key").get_by_label("and per API key").check()
    expect(page.locator("#ft-deploy-monitor")).to_contain_text("key billing-bot")

    scroll_to(page, "ft-canary-candidate", above=80)
    pick_many(page, "ft-canary-candidate", ["secret"])
    page.locator("#ft-canary-start").click()
    status = page.locator("#ft-canary-status")
    expect(status).to_contain_text("answers 10% of production beside base")
    readme_shot(page, "deploy-canary")
    page.locator("#ft-canary-reason input, #ft-canary-reason textarea").first.fill("not yet")
    page.locator("#ft-canary-rollback").click()
    expect(status).to_contain_text("No canary is running")
    expect(page.locator("#ft-canary-history")).to_contain_text("rolled back")
    assert app.query("SELECT outcome, reason FROM canary_releases") == [
        {"outcome": "rolled back", "reason": "not yet"}
    ]
    assert not page.errors
