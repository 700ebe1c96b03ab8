"""Sign-in sessions and throttling (ftapp.signin) on a real database, with a fake clock: what
ends a session, when one expires, when sign-in slows down and locks, and the log."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from ftapp import signin
from ftapp.auth import add_user, change_role, remove_user, reset_password
from ftapp.http_policy import host_allowed, host_name, origin_allowed
from ftapp.settings import Settings

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


@pytest.fixture
def users(db):
    add_user(db, "alice", "admin", PASSWORD, "test")
    add_user(db, "rita", "reviewer", PASSWORD, "test")
    return db


def test_a_session_stands_for_its_user_until_it_is_ended(users, settings):
    signin.start_session(users, settings, "tok-a", "alice", "127.0.0.1", now=T0)
    assert signin.session_user(users, settings, "tok-a", now=T0) == "alice"
    assert signin.session_user(users, settings, "made-up", now=T0) is None
    stored = [r[0] for r in users.execute("SELECT token_hash FROM sign_in_sessions")]
    assert stored == [signin.token_hash("tok-a")]  # the token itself is never stored
    signin.end_session(users, "tok-a")
    assert signin.session_user(users, settings, "tok-a", now=T0) is None


@pytest.mark.parametrize(
    "change",
    [
        lambda db: reset_password(db, "rita", "another long secret"),
        lambda db: change_role(db, "rita", "admin"),
        lambda db: remove_user(db, "rita"),
        lambda db: signin.end_user_sessions(db, "rita"),  # sign-out
    ],
    ids=["password reset", "role change", "removal", "sign-out"],
)
def test_what_an_admin_changes_ends_every_session_of_that_user(users, settings, change):
    for token in ("rita-laptop", "rita-phone"):
        signin.start_session(users, settings, token, "rita", "10.0.0.2", now=T0)
    signin.start_session(users, settings, "alice-1", "alice", "10.0.0.3", now=T0)
    change(users)
    assert signin.session_user(users, settings, "rita-laptop", now=T0) is None
    assert signin.session_user(users, settings, "rita-phone", now=T0) is None
    assert signin.session_user(users, settings, "alice-1", now=T0) == "alice"


def test_a_removed_user_added_again_does_not_get_the_old_session_back(users, settings):
    signin.start_session(users, settings, "old", "rita", "10.0.0.2", now=T0)
    remove_user(users, "rita")
    add_user(users, "rita", "reviewer", PASSWORD, "test")
    assert signin.session_user(users, settings, "old", now=T0) is None


def test_sessions_expire_when_idle_and_after_their_lifetime(users, settings):
    settings = replace(settings, session_idle_minutes=30, session_max_hours=2)
    signin.start_session(users, settings, "tok", "alice", "127.0.0.1", now=T0)
    # Used every 20 minutes it stays alive, until two hours after signing in.
    moment = T0
    for _ in range(5):
        moment += timedelta(minutes=20)
        assert signin.session_user(users, settings, "tok", now=moment) == "alice"
    assert signin.session_user(users, settings, "tok", now=T0 + timedelta(hours=2)) is None
    signin.start_session(users, settings, "idle", "alice", "127.0.0.1", now=T0)
    assert signin.session_user(users, settings, "idle", now=T0 + timedelta(minutes=31)) is None
    assert users.execute("SELECT count(*) FROM sign_in_sessions").fetchone()[0] == 0


def _fail(db, name, address, times, start=T0, step=timedelta(seconds=1)):
    moment = start
    for _ in range(times):
        signin.record_failure(db, name, address, locked=False, now=moment)
        moment += step
    return moment


def test_failures_slow_sign_in_down_then_lock_it(users):
    assert signin.throttle_for(users, "alice", "10.0.0.9", now=T0) == signin.Throttle(0, 0)
    delays = []
    moment = T0
    for _ in range(signin.USER_LOCKOUT - 1):
        moment = _fail(users, "alice", "10.0.0.9", 1, start=moment)
        delays.append(signin.throttle_for(users, "alice", "10.0.0.9", now=moment).delay_s)
    assert delays[: signin.DELAY_AFTER - 1] == [0, 0]
    assert delays[signin.DELAY_AFTER - 1 :] == sorted(delays[signin.DELAY_AFTER - 1 :])
    assert delays[-1] > delays[signin.DELAY_AFTER - 1] > 0
    moment = _fail(users, "alice", "10.0.0.9", 1, start=moment)
    locked = signin.throttle_for(users, "alice", "10.0.0.9", now=moment)
    assert locked.is_locked and locked.locked_for_s == pytest.approx(15 * 60, abs=2)
    # From another address too: the name is locked, not only the address.
    assert signin.throttle_for(users, "alice", "10.0.0.10", now=moment).is_locked
    # Refused tries while locked don't extend the lock.
    signin.record_failure(users, "alice", "10.0.0.9", locked=True, now=moment)
    later = moment + signin.LOCKOUT + timedelta(seconds=1)
    assert not signin.throttle_for(users, "alice", "10.0.0.9", now=later).is_locked


def test_one_address_guessing_many_names_is_locked(users):
    moment = T0
    for index in range(signin.ADDRESS_LOCKOUT):
        moment = _fail(users, f"guess{index}", "10.6.6.6", 1, start=moment)
    assert signin.throttle_for(users, "alice", "10.6.6.6", now=moment).is_locked
    assert not signin.throttle_for(users, "alice", "10.0.0.1", now=moment).is_locked


def test_a_success_clears_its_name_but_not_its_address(users, settings):
    before = signin.DELAY_AFTER + 2
    moment = _fail(users, "alice", "10.0.0.9", before)
    assert signin.throttle_for(users, "alice", "10.0.0.8", now=moment).delay_s > 0
    signin.start_session(users, settings, "tok", "alice", "10.0.0.9", now=moment)
    moment += timedelta(seconds=1)
    assert signin.throttle_for(users, "alice", "10.0.0.8", now=moment).delay_s == 0
    # The address's failures still count: its own success doesn't let it guess on.
    moment = _fail(users, "rita", "10.0.0.9", signin.ADDRESS_LOCKOUT - before, start=moment)
    assert signin.throttle_for(users, "anyone", "10.0.0.9", now=moment).is_locked


def test_failures_older_than_the_window_are_forgotten(users):
    _fail(users, "alice", "10.0.0.9", signin.USER_LOCKOUT)
    later = T0 + signin.WINDOW + timedelta(minutes=1) + signin.LOCKOUT
    assert signin.throttle_for(users, "alice", "10.0.0.9", now=later) == signin.Throttle(0, 0)


def test_the_log_says_what_happened_newest_first(users, settings):
    signin.record_failure(users, "nobody", "10.0.0.1", locked=False, now=T0)
    signin.record_failure(users, "alice", "10.0.0.1", locked=False, now=T0)
    signin.record_failure(users, "alice", "10.0.0.1", locked=True, now=T0)
    signin.start_session(users, settings, "tok", "alice", "10.0.0.1", now=T0)
    log = signin.sign_in_log(users)
    assert [(a.user_name, a.outcome, a.succeeded) for a in log] == [
        ("alice", "signed in", True),
        ("alice", "locked out", False),
        ("alice", "wrong password", False),
        ("nobody", "unknown user", False),
    ]
    assert {a.address for a in log} == {"10.0.0.1"}
    assert [a.user_name for a in signin.sign_in_log(users, user_name="nobody")] == ["nobody"]


# --- which Host and Origin the app answers (ftapp.http_policy) --------------------------------

LOCAL = Settings(home=__import__("pathlib").Path("/nonexistent"))
BEHIND_PROXY = replace(LOCAL, allowed_hosts=("ftapp.example.com",))
ON_SPACE = replace(LOCAL, space_host="someone-ftapp.hf.space")


@pytest.mark.parametrize(
    ("host", "settings", "bound", "allowed"),
    [
        ("127.0.0.1:7860", LOCAL, "127.0.0.1", True),
        ("localhost:7860", LOCAL, "127.0.0.1", True),
        ("LOCALHOST", LOCAL, "127.0.0.1", True),
        ("[::1]:7860", LOCAL, "127.0.0.1", True),
        ("127.0.0.2", LOCAL, "127.0.0.1", True),
        ("attacker.example:7860", LOCAL, "127.0.0.1", False),
        ("127.0.0.1.attacker.example", LOCAL, "127.0.0.1", False),
        ("localhost.attacker.example", LOCAL, "127.0.0.1", False),
        ("10.0.0.5:7860", LOCAL, "127.0.0.1", False),  # not bound there
        ("10.0.0.5:7860", LOCAL, "0.0.0.0", True),  # every interface: any address
        ("attacker.example", LOCAL, "0.0.0.0", False),  # ... but no name
        ("ftapp.example.com", BEHIND_PROXY, "127.0.0.1", True),
        ("evil.ftapp.example.com", BEHIND_PROXY, "127.0.0.1", False),
        ("someone-ftapp.hf.space", ON_SPACE, "0.0.0.0", True),
        ("other-space.hf.space", ON_SPACE, "0.0.0.0", False),
        ("", LOCAL, "127.0.0.1", False),
        (None, LOCAL, "127.0.0.1", False),
        ("127.0.0.1:port", LOCAL, "127.0.0.1", False),
        ("[::1", LOCAL, "127.0.0.1", False),
    ],
)
def test_hosts_the_app_answers_to(host, settings, bound, allowed):
    assert host_allowed(host, settings, bound) is allowed


def test_host_names_are_read_without_their_port():
    assert host_name("Example.COM:80") == "example.com"
    assert host_name("[::1]:7860") == "::1"
    assert host_name("::1") == "::1"
    assert host_name("a:b:c") is None


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://127.0.0.1:7860", True),
        ("http://localhost:7860", True),
        ("https://ftapp.example.com", True),
        ("http://attacker.example:7860", False),
        ("null", False),
        ("file://", False),
        ("ftp://127.0.0.1", False),
        ("http://user@attacker.example", False),
        ("", False),
    ],
)
def test_origins_the_app_accepts(origin, allowed):
    assert origin_allowed(origin, BEHIND_PROXY, "127.0.0.1") is allowed
