"""Users, roles and password hashing (ftapp.auth) on a real database, the `ftapp users` commands
in a real subprocess, and the rule that an app without users only serves on loopback."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from ftapp.auth import (
    ANONYMOUS,
    LOCAL_ADMIN,
    add_user,
    change_role,
    check_can_start,
    is_loopback,
    remove_user,
    require_role,
    reset_password,
    resolve_user,
    verify_password,
)
from ftapp.errors import Conflict, Forbidden, NotFound, ValidationError
from ftapp.records import Role

PASSWORD = "correct horse battery"


def test_passwords_are_stored_as_argon2id_hashes_only(db):
    add_user(db, "alice", "admin", PASSWORD, "test")
    row = db.execute("SELECT password_hash FROM users WHERE name = 'alice'").fetchone()
    assert row[0].startswith("$argon2id$")
    assert PASSWORD not in row[0]
    assert verify_password(db, "alice", PASSWORD)
    assert not verify_password(db, "alice", PASSWORD + "!")
    assert not verify_password(db, "alice", "")
    assert not verify_password(db, "nobody", PASSWORD)


def test_the_same_password_hashes_differently_for_two_users(db):
    add_user(db, "alice", "admin", PASSWORD, "test")
    add_user(db, "bob", "reviewer", PASSWORD, "test")
    hashes = [r[0] for r in db.execute("SELECT password_hash FROM users")]
    assert hashes[0] != hashes[1]  # salted


def test_reset_password_replaces_the_old_one(db):
    add_user(db, "alice", "admin", PASSWORD, "test")
    reset_password(db, "alice", "a brand new secret")
    assert verify_password(db, "alice", "a brand new secret")
    assert not verify_password(db, "alice", PASSWORD)
    with pytest.raises(NotFound):
        reset_password(db, "nobody", "a brand new secret")


@pytest.mark.parametrize(
    ("name", "role", "password", "message"),
    [
        ("", "admin", PASSWORD, "name:"),
        ("../etc", "admin", PASSWORD, "name:"),
        ("a b", "admin", PASSWORD, "name:"),
        ("x" * 65, "admin", PASSWORD, "name:"),
        ("alice", "owner", PASSWORD, "role:"),
        ("alice", "visitor", PASSWORD, "role:"),
        ("alice", "admin", "short", "at least 8"),
        ("alice1234", "admin", "alice1234", "must not be the user name"),
    ],
)
def test_bad_users_are_refused_and_nothing_is_written(db, name, role, password, message):
    with pytest.raises(ValidationError, match=message):
        add_user(db, name, role, password, "test")
    assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 0


def test_a_name_is_taken_once(db):
    add_user(db, "alice", "admin", PASSWORD, "test")
    with pytest.raises(Conflict):
        add_user(db, "alice", "reviewer", PASSWORD, "test")


def test_the_only_admin_stays_while_others_need_one(db):
    add_user(db, "alice", "admin", PASSWORD, "test")
    add_user(db, "rita", "reviewer", PASSWORD, "test")
    with pytest.raises(Conflict, match="only admin"):
        remove_user(db, "alice")
    with pytest.raises(Conflict, match="only admin"):
        change_role(db, "alice", "reviewer")
    change_role(db, "rita", "admin")
    remove_user(db, "alice")
    remove_user(db, "rita")  # the last user: back to single-user mode
    assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 0


def test_password_mode_resolves_signed_in_names_from_the_database(db, settings):
    assert resolve_user(db, settings, None) == resolve_user(db, settings, None)
    assert resolve_user(db, settings, None).role == Role.ADMIN  # no users: single-user mode
    assert resolve_user(db, settings, None).name == LOCAL_ADMIN
    add_user(db, "alice", "admin", PASSWORD, "test")
    add_user(db, "rita", "reviewer", PASSWORD, "test")
    assert resolve_user(db, settings, "rita").role == Role.REVIEWER
    assert resolve_user(db, settings, "alice").role == Role.ADMIN
    # Users exist now: a request without a sign-in is nobody, not the local admin.
    assert resolve_user(db, settings, None) == ANONYMOUS
    remove_user(db, "rita")
    assert resolve_user(db, settings, "rita") == ANONYMOUS  # removed since signing in
    # A Hugging Face name means nothing in password mode.
    assert resolve_user(db, settings, None, hf_username="alice") == ANONYMOUS


def test_hf_mode_makes_listed_accounts_admins_and_everyone_else_a_reviewer(db, settings):
    hf = replace(settings, auth="hf", admins=("Alice",))
    assert resolve_user(db, hf, None, None) == ANONYMOUS
    assert resolve_user(db, hf, None, "alice").role == Role.ADMIN  # usernames ignore case
    assert resolve_user(db, hf, None, "rita").role == Role.REVIEWER
    assert resolve_user(db, hf, "alice", None) == ANONYMOUS  # a password name means nothing
    everyone = replace(settings, auth="hf", admins=("*",))
    assert resolve_user(db, everyone, None, "rita").role == Role.ADMIN


def test_roles_rank_admin_over_reviewer_over_visitor(db, settings):
    add_user(db, "rita", "reviewer", PASSWORD, "test")
    rita = resolve_user(db, settings, "rita")
    require_role(rita, Role.REVIEWER)
    require_role(rita, Role.VISITOR)
    with pytest.raises(Forbidden, match="rita is a reviewer; this needs an admin"):
        require_role(rita, Role.ADMIN)
    with pytest.raises(Forbidden, match="sign in first"):
        require_role(ANONYMOUS, Role.REVIEWER)
    require_role(ANONYMOUS, Role.VISITOR)


def test_without_users_only_loopback_may_serve(db, settings):
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert is_loopback(host)
        check_can_start(db, settings, host)
    for host in ("0.0.0.0", "192.168.1.20", "::", "example.org"):
        assert not is_loopback(host)
        with pytest.raises(ValidationError, match="ftapp users add NAME --role admin"):
            check_can_start(db, settings, host)
    add_user(db, "alice", "admin", PASSWORD, "test")
    check_can_start(db, settings, "0.0.0.0")


def test_hf_sign_in_outside_a_space_is_refused(db, settings, monkeypatch):
    for name in ("SPACE_ID", "SYSTEM", "OAUTH_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="inside a Space"):
        check_can_start(db, replace(settings, auth="hf"), "0.0.0.0")


def _ftapp(env, *args, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftapp.cli", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_users_commands(env, settings):
    added = _ftapp(env, "users", "add", "alice", "--role", "admin", "--password-stdin",
                   stdin=PASSWORD + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert _ftapp(env, "users", "add", "rita", "--role", "reviewer", "--password-stdin",
                  stdin=PASSWORD + "\n").returncode == 0  # fmt: skip
    listing = _ftapp(env, "users", "list", "--json")
    assert [(u["name"], u["role"]) for u in __import__("json").loads(listing.stdout)] == [
        ("alice", "admin"), ("rita", "reviewer")]  # fmt: skip
    assert "hash" not in listing.stdout
    # No terminal and no --password-stdin: refused, with the way out.
    refused = _ftapp(env, "users", "add", "bob", "--role", "reviewer")
    assert refused.returncode == 2 and "--password-stdin" in refused.stderr
    short = _ftapp(env, "users", "reset", "rita", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 8" in short.stderr
    assert _ftapp(env, "users", "reset", "rita", "--password-stdin",
                  stdin="another fine secret\n").returncode == 0  # fmt: skip
    last_admin = _ftapp(env, "users", "remove", "alice")
    assert last_admin.returncode == 2 and "only admin" in last_admin.stderr
    assert _ftapp(env, "users", "role", "rita", "admin").returncode == 0
    assert _ftapp(env, "users", "remove", "alice").returncode == 0
    from ftapp.store.db import open_db

    db = open_db(settings.db_path)
    try:
        assert verify_password(db, "rita", "another fine secret")
        assert [r[0] for r in db.execute("SELECT name FROM users")] == ["rita"]
    finally:
        db.close()
