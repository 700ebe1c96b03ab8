"""Small leaks to reviewers (issue 16, item 6), each done the way it was first done, against
the real app in a subprocess, over raw HTTP (hidden events too):

- the progress line (once a hidden event of its own, now part of the next battle and of each
  vote), and the next-battle endpoint, asked about a session the reviewer is not in and about
  a made-up name;
- /config and /gradio_api/info read by a reviewer, for the names of datasets that existed
  when the app started;
- a JSON object sent where a name is expected, which once came back as SQLite's error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ftapp.arena.generation import generate_pending
from ftapp.arena.prompts import Prompt
from ftapp.arena.sessions import create_session
from ftapp.auth import add_user
from ftapp.serving.backend import Sampling
from ftapp.store import arena as arena_store
from ftapp.store.datasets import create_dataset
from tests.arena.conftest import arena_home
from tests.gradio_events import call_event, signed_in_client
from tests.live_app import running_app

pytestmark = pytest.mark.slow
USERS = {"alice": ("admin", "alice-secret-1"), "rita": ("reviewer", "rita-secret-1"),
         "bob": ("reviewer", "bob-secret-1")}  # fmt: skip
PASSWORDS = {name: password for name, (_, password) in USERS.items()}
SECRET_DATASET = "secretdata"
BOBS_SESSION = "bobs-review"  # open, with bob as its only reviewer
MADE_UP = "made-up-review"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path):
    """The app on the echo backend, started on a database that already holds a dataset and an
    open session for bob alone (a page built at start-up would carry what exists then)."""
    home = tmp_path_factory.mktemp("leaks") / "home"
    home.mkdir()
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    services = arena_home(home)
    with services.db() as db:
        for name, (role, password) in USERS.items():
            add_user(db, name, role, password, "test")
        create_dataset(db, SECRET_DATASET, "alice")
        prompts = [Prompt([{"role": "user", "content": f"question {i}"}], None) for i in range(3)]
        create_session(db, services.served_base, name=BOBS_SESSION, prompts=prompts,
                       source="test", contestants=["base", "pirate"], sampling=Sampling(),
                       reviewers=["bob"], user="alice")  # fmt: skip
    generate_pending(services.db, services.stream_chat, workers=1)
    with services.db() as db:
        assert arena_store.get_session(db, BOBS_SESSION).status == "open"
    env = {"FTAPP_BACKEND": "echo", "FTAPP_WORKER": "0"}
    with running_app(home, models_dir, env) as live:
        yield live


def client_for(app, name: str):
    return signed_in_client(app.url, name, PASSWORDS[name])


def config_of(client) -> dict:
    response = client.get("config")
    response.raise_for_status()
    return response.json()


def component_id(config: dict, elem_id: str) -> int:
    return next(c["id"] for c in config["components"] if c["props"].get("elem_id") == elem_id)


def progress_events(config: dict) -> list[dict]:
    """Every event that fills a reviewer's progress line."""
    progress = component_id(config, "ft-s-progress")
    return [d for d in config["dependencies"] if progress in d["outputs"]]


def named_event(config: dict, api_name: str) -> int:
    return next(d["id"] for d in config["dependencies"] if d["api_name"] == api_name)


def same_but_the_name(one: str, one_name: str, other: str, other_name: str) -> bool:
    """The two answers read the same, word for word, once each quoted name is blanked out."""
    return one.replace(repr(one_name), "NAME") == other.replace(repr(other_name), "NAME")


def test_no_event_shows_the_progress_of_a_session_not_yours(app):
    rita = client_for(app, "rita")
    config = config_of(rita)
    session = component_id(config, "ft-s-session")
    events = progress_events(config)
    # The session's change (session_open), Next battle (session_next: tested below too), the
    # four votes.
    assert len(events) == 6, [d["api_name"] for d in events]
    for event in events:
        # The session's name wherever the event takes it; a vote takes the battle in hand
        # (a gr.State: rita's page holds none, and she can't send one).
        data = [BOBS_SESSION if i == session else None for i in event["inputs"]]
        result = call_event(rita, event["id"], data)
        assert not result.success, event["api_name"]
        assert "complete" not in repr(result.output), event["api_name"]
    # bob, who is in the session, sees his progress, and his vote moves it.
    bob = client_for(app, "bob")
    page = "bobs-page"
    shown = call_event(bob, named_event(config, "session_open"), [BOBS_SESSION], session_hash=page)
    assert shown.success and "the session is 0% complete" in repr(shown.output)
    voted = call_event(bob, named_event(config, "s_vote_a"), [None, None, None, ""],
                       session_hash=page)  # fmt: skip
    assert voted.success, voted.error
    assert "You judged 1 of 3 battles · the session is 33% complete" in voted.output["data"][-1]


def test_next_battle_says_the_same_of_a_session_not_yours_and_of_a_made_up_one(app):
    rita = client_for(app, "rita")
    event = named_event(config_of(rita), "session_next")
    not_hers = call_event(rita, event, [BOBS_SESSION])
    made_up = call_event(rita, event, [MADE_UP])
    assert not not_hers.success and not made_up.success
    assert same_but_the_name(not_hers.error, BOBS_SESSION, made_up.error, MADE_UP), (
        not_hers.error, made_up.error)  # fmt: skip
    assert "reviewer of session" not in not_hers.error
    assert app.query("SELECT count(*) AS n FROM battle_assignments WHERE reviewer = 'rita'") == [
        {"n": 0}
    ]


def test_a_reviewer_reads_no_dataset_name_in_the_pages_description(app):
    rita = client_for(app, "rita")
    for route in ("config", "gradio_api/info"):
        response = rita.get(route)
        assert response.status_code == 200
        assert SECRET_DATASET not in response.text, f"{route} names a dataset"
        assert BOBS_SESSION not in response.text


def test_the_admin_gets_the_datasets_when_the_page_loads(app):
    alice = client_for(app, "alice")
    config = config_of(alice)
    assert SECRET_DATASET not in repr(config)  # the page as built is the same for everyone
    dataset = component_id(config, "ft-dataset")
    gates = {d["id"] for d in config["dependencies"]
             if any(event == "load" for _, event in d["targets"])}  # fmt: skip
    fill = next(d["id"] for d in config["dependencies"]
                if d["trigger_after"] in gates and d["outputs"] == [dataset])  # fmt: skip
    remembered = [""] * len(next(d for d in config["dependencies"] if d["id"] == fill)["inputs"])
    filled = call_event(alice, fill, remembered)  # the browser remembers no dataset yet
    assert filled.success, filled.error
    assert [SECRET_DATASET, SECRET_DATASET] in filled.output["data"][0]["choices"]
    # The same step, called by a reviewer who skips the gate, is refused.
    refused = call_event(client_for(app, "rita"), fill, remembered)
    assert not refused.success and "needs an admin" in refused.error


@pytest.mark.parametrize(
    ("who", "api_name", "data", "parameter"),
    [
        ("rita", "session_next", [{"$ne": ""}], "name"),
        ("alice", "review_open", [{"id": 1}, "all", "all", "", "", None], "name"),
        ("alice", "arena_add_contestant", ["x", {"model": "base"}, "Be brief."], "model"),
    ],
)
def test_a_json_object_where_a_name_belongs_is_refused_in_words(app, who, api_name, data,
                                                                parameter):  # fmt: skip
    client = client_for(app, who)
    result = call_event(client, named_event(config_of(client), api_name), data)
    assert not result.success
    assert result.error.startswith(f"{parameter}: expected text"), result.error
    assert "got an object" in result.error
    assert "binding parameter" not in result.error.lower()
    assert "sqlite" not in result.error.lower()
    assert not app.query("SELECT * FROM prompt_variants WHERE name = 'x'")
