"""The Space bundle, built by `build_space` and started as a Space starts it (`python app.py`
inside the bundle, its own copy of ftapp, demo mode, no persistent storage), with Hugging Face
sign-in against a fake huggingface.co on loopback (tests/oauth_provider.py): anonymous visitors
only reach the About page, a signed-in stranger is a reviewer who gets answers from the bundled
model in the Arena, the account named in FTAPP_ADMINS is an admin, and every event of the page
enforces it."""

from __future__ import annotations

import json

import httpx
import pytest

from ftapp.records import Role
from ftapp.settings import Settings
from ftapp.spaces import build_space
from tests.gradio_events import call_event, dependencies
from tests.live_app import running_app
from tests.oauth_provider import FakeHuggingFace, sign_in, sign_out
from tests.ui.test_roles_live import call_every_event, event_roles, is_role_refusal

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("space")
    bundle = build_space(root / "bundle")
    with FakeHuggingFace() as provider:
        env = {
            **provider.env(),
            "FTAPP_ADMINS": "alice",
            # What the Space gets without vLLM in its requirements; the worker trains nothing.
            "FTAPP_BACKEND": "hf",
            "FTAPP_WORKER": "0",
            "FTAPP_HOME": "",  # let the Space choose (no /data here: inside the bundle)
            "FTAPP_DEMO_MAX_STEPS": "5",
        }
        with running_app(bundle / "ftapp-data", None, env, app_dir=bundle) as live:
            yield live, provider, bundle


def client(app_url: str, cookie: str | None = None) -> httpx.Client:
    headers = {"Cookie": f"session={cookie}"} if cookie else {}
    return httpx.Client(base_url=app_url, headers=headers, timeout=300)


def by_name(http: httpx.Client) -> dict[str, dict]:
    return {d["api_name"]: d for d in dependencies(http)}


def test_it_runs_its_own_copy_of_ftapp_in_demo_mode(space):
    live, _, bundle = space
    log = live.log_path.read_text()
    assert f"ftapp from {bundle}" in log
    assert "demo data: imported 120 examples as demo-support@v1" in log
    assert (bundle / "ftapp-data" / "models" / "SmolLM2-135M-Instruct").is_dir()  # from the GGUF
    config = client(live.url).get("config").json()
    shown = {c["props"].get("elem_id"): c["props"].get("value") for c in config["components"]}
    assert "no persistent storage" in shown["ft-ephemeral-warning"]
    assert "Demo mode" in shown["ft-demo-note"] and "5 steps" in shown["ft-demo-note"]


def test_anonymous_visitors_only_get_the_about_page(space, monkeypatch):
    live, _, _ = space
    # Reading the handlers' roles builds the page in this process, where Gradio would attach
    # its OAuth routes (and, outside a Space, ask huggingface.co who we are): not needed here.
    monkeypatch.setattr("gradio.routes.attach_oauth", lambda app: None)
    http = client(live.url)
    assert http.get("/").status_code == 200  # the page itself is public
    sessions = by_name(http)["arena_sessions"]
    refused = call_event(http, sessions["id"], [None])
    assert is_role_refusal(refused) and "sign in first" in refused.error
    roles = event_roles(Settings(home=live.home, backend="hf", auth="hf", demo=True,
                                 ephemeral=True, demo_max_steps=5))  # fmt: skip
    results = call_every_event(http)
    assert set(roles) <= set(results)  # the rest are the sign-in button's own (Gradio)
    for index, role in roles.items():
        if role != Role.VISITOR:
            assert is_role_refusal(results[index]), f"event {index}: {results[index]}"


def test_a_signed_in_stranger_is_a_reviewer_who_gets_answers_from_the_bundled_model(space):
    live, provider, _ = space
    http = client(live.url, sign_in(live.url, provider, "rita"))
    events = by_name(http)
    page = "ritas-page"
    sent = call_event(http, events["free_send"]["id"], [None, "How do I fix a flat tire?"],
                      session_hash=page)  # fmt: skip
    assert sent.success, sent.error
    battle = live.query("SELECT * FROM battles ORDER BY id DESC LIMIT 1")[0]
    assert battle["created_by"] == "rita" and battle["status"] == "ready"
    for side in ("a", "b"):
        answer = json.loads(battle[f"conversation_{side}_json"])[-1]
        assert answer["role"] == "assistant" and len(answer["content"].strip()) > 10
    assert {battle["model_a"], battle["model_b"]} == {"base", "concise-prompt"}  # the seed pool
    vote = call_event(http, events["f_vote_b"]["id"], [None, None, None, ""], session_hash=page)
    assert vote.success, vote.error
    assert live.query("SELECT reviewer, choice FROM votes") == [{"reviewer": "rita",
                                                                 "choice": "b"}]  # fmt: skip
    for name in ("import_file", "queue_job", "leaderboard", "export_everything"):
        refused = call_event(http, events[name]["id"], [None] * len(events[name]["inputs"]))
        assert "rita is a reviewer; this needs an admin" in refused.error


def test_the_listed_account_is_an_admin_with_the_seeded_dataset(space):
    live, provider, _ = space
    http = client(live.url, sign_in(live.url, provider, "alice"))
    listed = call_event(http, by_name(http)["list_datasets"]["id"], [None])
    assert listed.success, listed.error
    assert "demo-support" in repr(listed.output["data"])
    exported = call_event(http, by_name(http)["export_everything"]["id"], [])
    assert exported.success, exported.error


def test_signing_out_makes_a_visitor_again(space):
    live, provider, _ = space
    cookie = sign_in(live.url, provider, "rita")
    http = client(live.url, cookie)
    sessions = by_name(http)["arena_sessions"]
    assert call_event(http, sessions["id"], [None]).success
    after = sign_out(live.url, cookie)
    refused = call_event(client(live.url, after), sessions["id"], [None])
    assert "sign in first" in refused.error
