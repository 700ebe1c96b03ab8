"""Every event of the page is an API endpoint, so every one must check the caller's role on the
server. These tests take the list of events from the app itself (a new event without a check
fails them), then call each one over HTTP, the way a browser or a script would, including the
events hidden from the API page: as a reviewer, as an admin, and without signing in.

The app runs as a real subprocess with password sign-in (users in its SQLite database) and
the echo backend; tests/ui/test_hf_signin_live.py does the same with Hugging Face sign-in."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ftapp.auth import add_user, remove_user
from ftapp.processes import free_port
from ftapp.records import Role
from ftapp.services import Services
from ftapp.settings import Settings
from ftapp.store.db import open_db
from tests.arena.conftest import running_arena_app
from tests.gradio_events import EventResult, call_event, dependencies, signed_in_client
from tests.live_app import REPO

pytestmark = pytest.mark.slow
USERS = {"alice": ("admin", "alice-secret-1"), "rita": ("reviewer", "rita-secret-1"),
         "bob": ("reviewer", "bob-secret-1")}  # fmt: skip
PASSWORDS = {name: password for name, (_, password) in USERS.items()}
ROLE_REFUSALS = ("needs an admin", "sign in first")
# The named endpoints a reviewer may call; every other named endpoint is for admins. Changing a
# role means changing this list too, on purpose.
VOTES = ("a", "b", "tie", "both_bad")
REVIEWER_ENDPOINTS = {"arena_sessions", "session_open", "session_next", "free_send", "free_new",
                      *(f"{mode}_vote_{choice}" for mode in "sf" for choice in VOTES)}  # fmt: skip


def event_roles(settings: Settings) -> dict[int, Role]:
    """The role each event of the page requires, read from the handlers' guards (the same code
    and settings as the app under test, so the event numbers match)."""
    from ftapp.ui.app import build_app

    app = build_app(Services(settings))
    roles = {}
    for index, block_fn in app.fns.items():
        handler = block_fn.fn
        if handler is None or handler.__module__.startswith("gradio"):
            continue  # a js-only event, or Gradio's own (the sign-in button's label)
        roles[index] = getattr(handler, "ftapp_role", None)
    return roles


def default_inputs(config: dict[str, Any], dependency: dict[str, Any]) -> list[Any]:
    """Each input component's initial value: what the page would send before anyone types."""
    components = {c["id"]: c for c in config["components"]}
    values = []
    for component_id in dependency["inputs"]:
        component = components[component_id]
        values.append(None if component["type"] == "state" else component["props"].get("value"))
    return values


def call_every_event(client: httpx.Client) -> dict[int, EventResult]:
    config = client.get("config").json()
    results = {}
    for dependency in config["dependencies"]:
        if not dependency["backend_fn"]:
            continue
        event_data = {"index": [0, 0], "value": "", "row_value": [], "col_value": [],
                      "selected": True} if dependency["collects_event_data"] else None  # fmt: skip
        results[dependency["id"]] = call_event(
            client, dependency["id"], default_inputs(config, dependency), event_data
        )
    return results


def is_role_refusal(result: EventResult) -> bool:
    return not result.success and any(text in result.error for text in ROLE_REFUSALS)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path):
    home = tmp_path_factory.mktemp("roles") / "home"
    with running_arena_app(home, models_dir, USERS) as live:
        yield live


@pytest.fixture(scope="module")
def roles(app) -> dict[int, Role]:
    return event_roles(Settings(home=app.home, backend="echo"))


def client_for(app, name: str) -> httpx.Client:
    return signed_in_client(app.url, name, PASSWORDS[name])


def test_every_event_has_a_role_check(app, roles):
    unguarded = [index for index, role in roles.items() if role is None]
    assert not unguarded, f"events without a role check: {unguarded}"
    live_ids = [d["id"] for d in dependencies(client_for(app, "alice")) if d["backend_fn"]]
    assert sorted(roles) == sorted(live_ids), "the in-process page differs from the app's"
    names = {d["id"]: d["api_name"] for d in dependencies(client_for(app, "alice"))
             if d["api_visibility"] == "public"}  # fmt: skip
    below_admin = {names[i] for i, role in roles.items() if i in names and role != Role.ADMIN}
    assert below_admin == REVIEWER_ENDPOINTS
    counts = {role: list(roles.values()).count(role) for role in Role}
    assert counts[Role.ADMIN] > 50 and counts[Role.REVIEWER] > 10 and counts[Role.VISITOR] >= 3


def test_a_reviewer_is_refused_every_admin_event(app, roles):
    results = call_every_event(client_for(app, "rita"))
    for index, role in roles.items():
        result = results[index]
        if role == Role.ADMIN:
            assert is_role_refusal(result), f"event {index} let a reviewer through: {result}"
            assert "rita is a reviewer; this needs an admin" in result.error
        else:
            assert not is_role_refusal(result), f"event {index} refused a reviewer: {result}"
    # The checks ran before anything was done: no dataset, job or session was created.
    assert app.query("SELECT count(*) AS n FROM datasets")[0]["n"] == 0
    assert app.query("SELECT count(*) AS n FROM jobs")[0]["n"] == 0


def test_nothing_a_reviewers_page_runs_on_load_is_refused(app):
    """What the browser runs when a reviewer's page loads: no step is refused (a refusal pops
    up on their screen); the admins' steps wait behind a role gate that stops them silently."""
    rita = client_for(app, "rita")
    config = rita.get("config").json()
    loads = [d for d in config["dependencies"]
             if d["backend_fn"] and any(event == "load" for _, event in d["targets"])]  # fmt: skip
    assert len(loads) >= 3
    for dependency in loads:
        result = call_event(rita, dependency["id"], default_inputs(config, dependency))
        assert not is_role_refusal(result), f"event {dependency['id']} on load: {result.error}"


def test_an_admin_passes_every_role_check(app, roles):
    results = call_every_event(client_for(app, "alice"))
    refused = {i: r.error for i, r in results.items() if is_role_refusal(r)}
    assert not refused


def test_nobody_gets_in_without_signing_in(app):
    anonymous = httpx.Client(base_url=app.url, timeout=30)
    assert anonymous.get("config").status_code == 401
    assert anonymous.get("gradio_api/info").status_code == 401
    joined = anonymous.post(
        "gradio_api/queue/join",
        json={
            "data": [],
            "fn_index": 0,
            "session_hash": "x",
            "event_data": None,
            "trigger_id": None,
        },
    )
    assert joined.status_code in (401, 403)
    wrong = anonymous.post("login", data={"username": "rita", "password": "not it at all"})
    assert wrong.status_code == 400
    unknown = anonymous.post("login", data={"username": "mallory", "password": "whatever1"})
    assert unknown.status_code == 400


def test_sign_out_ends_the_session(app):
    client = client_for(app, "rita")
    assert client.get("config").status_code == 200
    client.get("logout")
    assert client.get("config").status_code == 401


def test_a_removed_user_is_refused_at_the_next_request(app):
    client = client_for(app, "bob")
    sessions = next(d for d in dependencies(client) if d["api_name"] == "arena_sessions")
    assert call_event(client, sessions["id"], [None]).success
    db = open_db(app.db_path)
    try:
        remove_user(db, "bob")
    finally:
        db.close()
    refused = call_event(client, sessions["id"], [None])
    # Its session ended with the user: refused before any handler runs (tests/security/).
    assert not refused.success and "HTTP 401" in refused.error
    db = open_db(app.db_path)
    try:  # put bob back for the other tests of the module
        add_user(db, "bob", "reviewer", PASSWORDS["bob"], "test")
    finally:
        db.close()


def test_reviewers_never_see_each_others_votes(app, roles):
    marker = "bob-private-comment-7731"
    bob = client_for(app, "bob")
    by_name = {d["api_name"]: d for d in dependencies(bob)}
    config = bob.get("config").json()
    page = "bobs-page"
    sent = call_event(bob, by_name["free_send"]["id"], [None, "Tell me about tangerines."],
                      session_hash=page)  # fmt: skip
    assert sent.success, sent.error
    vote = by_name["f_vote_a"]
    data = default_inputs(config, vote)
    data[-1] = marker  # the comment box
    voted = call_event(bob, vote["id"], data, session_hash=page)
    assert voted.success, voted.error
    assert app.query("SELECT count(*) AS n FROM votes WHERE comment = ?", [marker])[0]["n"] == 1
    # Everything rita may call, called: no response carries bob's vote.
    rita_results = call_every_event(client_for(app, "rita"))
    for index in roles:
        assert marker not in repr(rita_results[index].output), f"event {index} leaked a vote"


def test_without_users_the_app_refuses_to_serve_beyond_loopback(tmp_path: Path):
    home = tmp_path / "home"
    env = {**os.environ, "FTAPP_HOME": str(home), "FTAPP_HOST": "0.0.0.0",
           "FTAPP_PORT": str(free_port()), "FTAPP_BACKEND": "echo",
           "FTAPP_WORKER": "0"}  # fmt: skip
    started = time.monotonic()
    done = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0
    assert "ftapp users add NAME --role admin" in done.stderr
    assert "0.0.0.0" in done.stderr
    assert time.monotonic() - started < 120
    # It refused before starting anything: no worker log, no model preparation.
    assert not (home / "logs" / "worker.log").exists()


def test_with_users_it_serves_on_every_interface(tmp_path: Path, models_dir: Path):
    alice = {"alice": USERS["alice"]}
    with running_arena_app(tmp_path / "home", models_dir, alice, {"FTAPP_HOST": "0.0.0.0"}) as live:
        assert httpx.get(live.url + "config", timeout=30).status_code == 401  # sign-in needed
        assert client_for(live, "alice").get("config").status_code == 200


# --- files: only through Gradio's upload and download handling --------------------------------


def _import_with(client: httpx.Client, file_data: Any, name: str) -> EventResult:
    config = client.get("config").json()
    event = next(d for d in config["dependencies"] if d["api_name"] == "import_file")
    data = default_inputs(config, event)
    data[0], data[1] = file_data, name
    return call_event(client, event["id"], data)


def _upload(client: httpx.Client, file_name: str, content: bytes) -> str:
    response = client.post("gradio_api/upload", files={"files": (file_name, content)})
    response.raise_for_status()
    return response.json()[0]


def test_nothing_under_the_home_is_served(app):
    alice = client_for(app, "alice")
    for path in [app.db_path, app.home / "models" / "SmolLM2-135M-Instruct" / "config.json",
                 Path("/etc/passwd")]:  # fmt: skip
        for url in (f"gradio_api/file={path}", f"file={path}",
                    f"gradio_api/file=../../../../../../..{path}"):  # fmt: skip
            response = alice.get(url)
            assert response.status_code in (403, 404), f"{url} answered {response.status_code}"
            assert b"SQLite format" not in response.content


def test_a_file_input_naming_a_path_outside_the_upload_cache_is_refused(app):
    alice = client_for(app, "alice")
    before = app.query("SELECT count(*) AS n FROM datasets")[0]["n"]
    for path in (str(app.db_path), "/etc/passwd", "../../../../etc/passwd",
                 str(app.home / "uploads")):  # fmt: skip
        result = _import_with(alice, {"path": path, "meta": {"_type": "gradio.FileData"}},
                              "stolen")  # fmt: skip
        assert not result.success, f"{path} was read"
    assert app.query("SELECT count(*) AS n FROM datasets")[0]["n"] == before


def test_an_uploaded_file_name_with_path_parts_stays_in_the_upload_cache(app):
    alice = client_for(app, "alice")
    row = b'{"prompt": "What is 2+2?", "completion": "4"}\n'
    stored = _upload(alice, "../../../../escape.jsonl", row)
    cache = Path(app.home.parent / f"{app.home.name}-tmp" / "gradio").resolve()
    assert Path(stored).resolve().is_relative_to(cache)
    assert not list(app.home.parent.glob("escape.jsonl"))
    assert not Path("/escape.jsonl").exists()
    # Importing it works, and the name it is stored under can't lead anywhere either.
    result = _import_with(alice, {"path": stored, "meta": {"_type": "gradio.FileData"}},
                          "from-a-strange-name")  # fmt: skip
    assert result.success, result.error


def test_names_that_look_like_paths_are_refused(app):
    alice = client_for(app, "alice")
    stored = _upload(alice, "ok.jsonl", b'{"prompt": "Hi", "completion": "Hello"}\n')
    before = app.query("SELECT count(*) AS n FROM datasets")[0]["n"]
    for name in ("../../evil", "/etc/evil", "..", "a/b"):
        result = _import_with(alice, {"path": stored, "meta": {"_type": "gradio.FileData"}}, name)
        assert not result.success and "name" in result.error.lower(), (name, result)
    assert app.query("SELECT count(*) AS n FROM datasets")[0]["n"] == before
    config = alice.get("config").json()
    add = next(d for d in config["dependencies"] if d["api_name"] == "arena_add_contestant")
    refused = call_event(alice, add["id"], ["../../evil", "base", "Be brief."])
    assert not refused.success and "name" in refused.error.lower()
    assert not app.query("SELECT * FROM prompt_variants WHERE name LIKE '%evil%'")


def test_gradio_client_as_a_reviewer_is_refused_admin_endpoints(app):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    rita = Client(app.url, auth=("rita", PASSWORDS["rita"]), verbose=False)
    for api_name, args in [("/list_datasets", (None,)), ("/leaderboard", ("All battles",)),
                           ("/export_preferences", ("All battles",)), ("/arena_close", ("x",)),
                           ("/train_preset", ("quick CPU demo",))]:  # fmt: skip
        with pytest.raises(AppError, match="rita is a reviewer; this needs an admin"):
            rita.predict(*args, api_name=api_name)
    # The same client may do what reviewers do.
    assert rita.predict(None, api_name="/arena_sessions") is not None
