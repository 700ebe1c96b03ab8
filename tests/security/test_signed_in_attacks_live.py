"""Attacks by people who can reach a running ftapp with password users (issue 16, items 2-5),
each done the way it was first done, against the real app in a subprocess, over HTTP:

- an old cookie after `ftapp users reset`, `remove` + `add`, a role change, a sign-out;
- brute-forcing sign-in, one guess after another and all at once;
- reading another reviewer's queued results by their page's session hash;
- downloading an admin's export with its link, uploading as a reviewer, over the limit.

Each sign-in attack comes from an address of its own on the loopback network (127.0.0.N), so
that the per-address counts of one test don't lock out the next.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ftapp import signin
from tests.arena.conftest import running_arena_app
from tests.gradio_events import call_event, dependencies, signed_in_client

pytestmark = pytest.mark.slow
USERS = {"alice": ("admin", "alice-secret-1"), "rita": ("reviewer", "rita-secret-1"),
         "bob": ("reviewer", "bob-secret-1"), "carol": ("reviewer", "carol-secret-1"),
         "dave": ("reviewer", "dave-secret-1"), "erin": ("reviewer", "erin-secret-1")}  # fmt: skip
PASSWORDS = {name: password for name, (_, password) in USERS.items()}
UPLOAD_MB_PER_HOUR = 1


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path):
    home = tmp_path_factory.mktemp("attacks") / "home"
    # A download left over from an earlier run of the app: gone once it has started.
    leftover = home.parent / "home-tmp" / "gradio" / "ftapp-downloads" / "alice" / "old"
    leftover.mkdir(parents=True)
    (leftover / "ftapp-everything.zip").write_bytes(b"PK old export")
    env = {"FTAPP_UPLOAD_MB_PER_HOUR": str(UPLOAD_MB_PER_HOUR)}
    with running_arena_app(home, models_dir, USERS, env) as live:
        # The event that lists a reviewer's sessions: any signed-in user may call it.
        listing = next(d["id"] for d in dependencies(client(live, "alice"))
                       if d["api_name"] == "arena_sessions")  # fmt: skip
        object.__setattr__(live, "leftover", leftover)  # LiveApp is frozen
        object.__setattr__(live, "listing", listing)
        yield live


def client(app, name: str | None = None, address: str = "127.0.0.1") -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return signed_in_client(app.url, name, PASSWORDS.get(name or ""), transport=transport)


def cli(app, *args: str, stdin: str = "") -> None:
    env = {**os.environ, "FTAPP_HOME": str(app.home), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "ftapp.cli", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr


def signed_in_as(app, http: httpx.Client) -> str | None:
    """Who the app thinks this client is, asked twice: Gradio's own /user route, and whether
    an event answers. Both must agree."""
    user = http.get("gradio_api/user").json()
    answered = call_event(http, app.listing, [None]).success
    assert bool(user) == answered, (user, answered)
    return user


# --- 2. sessions end when they should ---------------------------------------------------------


def test_a_password_reset_ends_the_old_cookie(app):
    rita = client(app, "rita")
    assert signed_in_as(app, rita) == "rita"
    cli(app, "users", "reset", "rita", "--password-stdin", stdin="a new secret for rita\n")
    assert signed_in_as(app, rita) is None
    assert rita.get("config").status_code == 401
    PASSWORDS["rita"] = "a new secret for rita"
    assert signed_in_as(app, client(app, "rita")) == "rita"


def test_a_removed_and_re_added_user_does_not_get_the_old_cookie_back(app):
    bob = client(app, "bob")
    assert signed_in_as(app, bob) == "bob"
    cli(app, "users", "remove", "bob")
    cli(app, "users", "add", "bob", "--role", "reviewer", "--password-stdin",
        stdin=PASSWORDS["bob"] + "\n")  # fmt: skip
    assert signed_in_as(app, bob) is None


def test_a_role_change_ends_the_sessions_of_that_user_only(app):
    carol, dave = client(app, "carol"), client(app, "dave")
    cli(app, "users", "role", "carol", "admin")
    assert signed_in_as(app, carol) is None
    assert signed_in_as(app, dave) == "dave"
    cli(app, "users", "role", "carol", "reviewer")


def test_sign_out_ends_every_session_of_the_user(app):
    laptop, phone = client(app, "erin"), client(app, "erin")
    laptop.get("logout")
    assert signed_in_as(app, phone) is None
    assert app.query("SELECT count(*) AS n FROM sign_in_sessions WHERE user_name = 'erin'")[0][
        "n"] == 0  # fmt: skip


def test_a_session_outlives_nothing_but_its_row(app):
    """The cookie works exactly as long as its session row exists: deleting the row (what an
    expiry does) signs the browser out at its next request."""
    dave = client(app, "dave")
    assert signed_in_as(app, dave) == "dave"
    import sqlite3

    conn = sqlite3.connect(app.db_path, timeout=30)
    try:
        with conn:
            conn.execute("UPDATE sign_in_sessions SET last_seen_at = '2000-01-01T00:00:00+00:00'"
                         " WHERE user_name = 'dave'")  # fmt: skip
    finally:
        conn.close()
    assert signed_in_as(app, dave) is None  # idle for longer than FTAPP_SESSION_IDLE_MINUTES


# --- 3. sign-in can't be brute-forced ---------------------------------------------------------


def _try(app, name: str, password: str, address: str) -> httpx.Response:
    with httpx.Client(base_url=app.url, timeout=120,
                      transport=httpx.HTTPTransport(local_address=address)) as http:  # fmt: skip
        return http.post("login", data={"username": name, "password": password})


def outcome(response: httpx.Response) -> str:
    """What a sign-in answer says: a lockout is a 400 like a wrong password (Gradio's sign-in
    page shows nothing for other statuses), told apart by its text and Retry-After."""
    if response.status_code == 200:
        return "signed in"
    assert response.status_code == 400, response.text
    if "Too many failed sign-ins" in response.json()["detail"]:
        assert int(response.headers["retry-after"]) > 0
        return "locked"
    return "refused"


def test_guessing_one_after_another_locks_the_name_even_for_the_right_password(app):
    address = "127.0.0.11"
    answers = [outcome(_try(app, "dave", f"guess-{n}", address)) for n in range(12)]
    assert answers == ["refused"] * signin.USER_LOCKOUT + ["locked", "locked"]
    right = _try(app, "dave", PASSWORDS["dave"], "127.0.0.12")  # another address too
    assert outcome(right) == "locked"
    assert "try again in about 15 minutes" in right.json()["detail"]
    outcomes = app.query("SELECT outcome, address FROM sign_in_attempts WHERE user_name = 'dave'"
                         " AND succeeded = 0 ORDER BY id")  # fmt: skip
    assert [o["outcome"] for o in outcomes].count("wrong password") == signin.USER_LOCKOUT
    assert [o["outcome"] for o in outcomes].count("locked out") == 3
    assert {o["address"] for o in outcomes} == {address, "127.0.0.12"}


def test_guessing_all_at_once_is_counted_the_same(app):
    address = "127.0.0.13"
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda n: outcome(_try(app, "carol", f"guess-{n}", address)),
                                range(16)))  # fmt: skip
    assert sorted(answers) == ["locked"] * (16 - signin.USER_LOCKOUT) + [
        "refused"] * signin.USER_LOCKOUT  # fmt: skip
    assert outcome(_try(app, "carol", PASSWORDS["carol"], "127.0.0.14")) == "locked"


def test_an_unknown_name_and_a_wrong_password_get_the_same_answer(app):
    unknown = _try(app, "mallory", "whatever-it-is", "127.0.0.15")
    wrong = _try(app, "alice", "whatever-it-is", "127.0.0.16")
    assert (unknown.status_code, unknown.text) == (wrong.status_code, wrong.text)
    assert app.query("SELECT outcome FROM sign_in_attempts WHERE address = '127.0.0.15'") == [
        {"outcome": "unknown user"}]  # fmt: skip


def test_one_address_guessing_many_names_is_locked_out(app):
    address = "127.0.0.17"
    for n in range(signin.ADDRESS_LOCKOUT):
        assert outcome(_try(app, f"nobody{n}", "guess", address)) == "refused"
    assert outcome(_try(app, "alice", PASSWORDS["alice"], address)) == "locked"
    assert outcome(_try(app, "alice", PASSWORDS["alice"], "127.0.0.18")) == "signed in"


def test_admins_read_the_sign_in_log(app):
    env = {**os.environ, "FTAPP_HOME": str(app.home)}
    done = subprocess.run([sys.executable, "-m", "ftapp.cli", "users", "log", "--user", "dave"],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "locked out" in done.stdout and "127.0.0.11" in done.stdout


# --- 4. page sessions belong to whoever used them first ---------------------------------------


def test_a_reviewer_cannot_read_or_drive_another_reviewers_page(app):
    rita, bob = client(app, "rita"), client(app, "bob")
    by_name = {d["api_name"]: d for d in dependencies(rita)}
    page = "ritas-page-0001"
    sent = call_event(rita, by_name["free_send"]["id"], [None, "Hello there"], session_hash=page)
    assert sent.success, sent.error
    # What the probe did: bob listens on rita's page, and joins events on it.
    assert bob.get("gradio_api/queue/data", params={"session_hash": page}).status_code == 403
    assert bob.get(f"gradio_api/heartbeat/{page}").status_code == 403
    joined = bob.post("gradio_api/queue/join", json={
        "data": [None, "hi"], "fn_index": by_name["free_send"]["id"], "session_hash": page,
        "event_data": None, "trigger_id": None})  # fmt: skip
    assert joined.status_code == 403
    cancelled = bob.post("gradio_api/cancel", json={"session_hash": page, "fn_index": 0,
                                                     "event_id": "x"})  # fmt: skip
    assert cancelled.status_code == 403
    # Rita's page still works for her.
    again = call_event(rita, by_name["free_send"]["id"], [None, "Again"], session_hash=page)
    assert again.success, again.error


def test_an_event_too_large_to_check_is_refused_unread(app):
    rita = client(app, "rita")
    huge = b'{"session_hash": "x", "data": ["' + b"a" * (17 * 1024 * 1024) + b'"]}'
    answer = rita.post("gradio_api/queue/join", content=huge,
                       headers={"content-type": "application/json"})  # fmt: skip
    assert answer.status_code == 413


# --- 5. downloads and uploads -----------------------------------------------------------------


def _exported_path(result) -> str:
    assert result.success, result.error
    value = result.output["data"][0]
    return value["path"] if isinstance(value, dict) else value


def test_downloads_from_an_earlier_run_are_gone(app):
    assert not app.leftover.exists()


def test_an_admins_export_downloads_only_for_that_admin_and_only_for_a_while(app):
    alice, rita = client(app, "alice"), client(app, "rita")
    by_name = {d["api_name"]: d for d in dependencies(alice)}
    urls = {}
    for api_name, data in [("export_everything", []), ("export_battles_csv", ["All battles"])]:
        path = _exported_path(call_event(alice, by_name[api_name]["id"], data))
        urls[api_name] = url = f"gradio_api/file={path}"
        assert alice.get(url).status_code == 200, api_name
        assert rita.get(url).status_code == 404, api_name
        assert client(app).get(url).status_code in (401, 404), api_name
    assert alice.get(urls["export_everything"]).content.startswith(b"PK")
    assert b"argon2" not in rita.get(urls["export_everything"]).content
    # The everything zip holds every password hash: once its time is up, nobody gets it.
    zip_path = Path(urls["export_everything"].split("file=", 1)[1])
    old = time.time() - 16 * 60
    os.utime(zip_path.parent, (old, old))
    assert alice.get(urls["export_everything"]).status_code == 404
    assert alice.get(urls["export_battles_csv"]).status_code == 200


def test_reviewers_cannot_upload_and_admins_only_within_their_limit(app):
    rita, alice = client(app, "rita"), client(app, "alice")
    refused = rita.post("gradio_api/upload", files={"files": ("a.jsonl", b"{}\n")})
    assert refused.status_code == 403
    half = b"x" * (UPLOAD_MB_PER_HOUR * 1024 * 1024 // 2 + 1)
    assert alice.post("gradio_api/upload", files={"files": ("a.jsonl", half)}).status_code == 200
    over = alice.post("gradio_api/upload", files={"files": ("b.jsonl", half)})
    assert over.status_code == 413 and "FTAPP_UPLOAD_MB_PER_HOUR" in over.text
