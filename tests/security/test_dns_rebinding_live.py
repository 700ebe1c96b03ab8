"""DNS rebinding (issue 16, item 1): a website that resolves its own name to 127.0.0.1 must not
be able to drive a local ftapp, the default set-up of `make run` (single-user mode, where
whoever reaches the app is its admin).

Against the real app in a subprocess: every route refuses a forged Host, and a foreign Origin;
the probe's own attack (adding a contestant through the admin event) changes nothing; in
Chromium, a page loaded as attacker.example (mapped to 127.0.0.1) can't call the app, while
the page at 127.0.0.1 works as before."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from ftapp.services import Services
from ftapp.settings import Settings
from tests.arena.conftest import running_arena_app
from tests.gradio_events import call_event, dependencies

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
ATTACKER = "attacker.example"
# Chromium's own guard against public pages calling private addresses. Firefox and Safari have
# none, and a page that was itself loaded from 127.0.0.1 passes it: off here, so that what is
# tested is the app's refusal, not the browser's.
PRIVATE_NETWORK_CHECKS = ("BlockInsecurePrivateNetworkRequests", "LocalNetworkAccessChecks",
                          "PrivateNetworkAccessSendPreflights",
                          "PrivateNetworkAccessRespectPreflightResults")  # fmt: skip


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path):
    home = tmp_path_factory.mktemp("rebinding") / "home"
    with running_arena_app(home, models_dir) as live:  # no users: single-user mode
        yield live


def port_of(app) -> int:
    return urlsplit(app.url).port


def every_route(app) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, path parameters filled in, read from the
    same app as the one under test."""
    import gradio as gr

    from ftapp.ui.app import build_app

    blocks = build_app(Services(Settings(home=app.home, backend="echo")))
    fastapi_app = gr.routes.App.create_app(blocks)
    routes = []
    for route in fastapi_app.routes:
        path = re.sub(r"\{[^}]+\}", "x", getattr(route, "path", ""))
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD" and path:
                routes.append((method, path))
    return routes


def test_every_route_refuses_a_forged_host_and_a_foreign_origin(app):
    routes = every_route(app)
    assert len(routes) > 40 and ("POST", "/gradio_api/queue/join") in routes
    forged = {"Host": f"{ATTACKER}:{port_of(app)}"}
    foreign = {"Origin": f"http://{ATTACKER}:{port_of(app)}"}
    with httpx.Client(base_url=app.url.rstrip("/"), timeout=30) as http:
        for method, path in routes:
            answer = http.request(method, path, headers=forged)
            assert answer.status_code == 400, (method, path, answer.status_code)
            assert "host name" in answer.text
            answer = http.request(method, path, headers={**forged, **foreign})
            assert answer.status_code == 400, (method, path)
            answer = http.request(method, path, headers=foreign)
            assert answer.status_code == 403, (method, path, answer.status_code)
        # "null" is what a sandboxed frame or a file:// page sends.
        assert http.get("/config", headers={"Origin": "null"}).status_code == 403
        # The app's own names still work, with or without an Origin.
        for host in ("127.0.0.1", "localhost"):
            own = {"Host": f"{host}:{port_of(app)}", "Origin": f"http://{host}:{port_of(app)}"}
            assert http.get("/config", headers=own).status_code == 200, host
        assert http.get("/config").status_code == 200


def test_the_probes_attack_adds_nothing(app):
    """What the probe did: the admin event that adds a contestant, sent as a rebinding page
    sends it."""
    http = httpx.Client(base_url=app.url, timeout=30)
    event = next(d for d in dependencies(http) if d["api_name"] == "arena_add_contestant")
    before = app.query("SELECT count(*) AS n FROM prompt_variants")[0]["n"]
    forged = {"Host": f"{ATTACKER}:{port_of(app)}", "Origin": f"http://{ATTACKER}:{port_of(app)}"}
    attacker = httpx.Client(base_url=app.url, timeout=30, headers=forged)
    refused = call_event(attacker, event["id"], ["owned", "base", "You are owned."])
    assert not refused.success and "HTTP 400" in refused.error
    assert app.query("SELECT count(*) AS n FROM prompt_variants")[0]["n"] == before
    # The same event from the app's own page works: the check refuses the host, not the event.
    added = call_event(http, event["id"], ["welcome", "base", "Be kind."])
    assert added.success, added.error
    assert app.query("SELECT count(*) AS n FROM prompt_variants")[0]["n"] == before + 1


def test_a_page_under_another_name_cannot_call_the_app_in_a_browser(app):
    playwright_api = pytest.importorskip("playwright.sync_api")
    from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("needs Debian's chromium (make browser)")
    port = port_of(app)
    evil_url = f"http://{ATTACKER}:{port}/evil.html"
    # The attacker's page, as it was served before the name was rebound to 127.0.0.1; its
    # scripts then call the app as the same origin.
    evil_page = """<html><body><script>
    window.results = (async () => {
      const get = await fetch('/config').then(r => r.status, e => 'error');
      const post = await fetch('/gradio_api/queue/join', {method: 'POST',
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({data: ['owned', 'base', 'x'], fn_index: 0, session_hash: 'evil'})
      }).then(r => r.status, e => 'error');
      return [get, post];
    })();
    </script></body></html>"""
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {ATTACKER} 127.0.0.1",
                  f"--disable-features={','.join(PRIVATE_NETWORK_CHECKS)}"],
        )  # fmt: skip
        try:
            page = browser.new_context().new_page()
            page.route(evil_url, lambda route: route.fulfill(body=evil_page,
                                                             content_type="text/html"))  # fmt: skip
            page.goto(evil_url)
            assert page.evaluate("window.results") == [400, 400]
            # Opening the app itself under that name gets nothing of it either.
            answer = page.goto(f"http://{ATTACKER}:{port}/")
            assert answer.status == 400 and "ftapp" not in page.content()
            # At its own address the app loads and runs as before.
            page.goto(app.url)
            page.get_by_role("tab", name="Data").wait_for()
        finally:
            browser.close()
    assert app.query("SELECT count(*) AS n FROM prompt_variants WHERE name = 'owned'")[0]["n"] == 0
