"""Who is asking, and may they? Users, roles, password hashing and the per-handler check.

Three ways to be signed in, chosen by FTAPP_AUTH (see settings.py):
- password: users live in SQLite (`ftapp users add`), passwords hashed with Argon2id. With no
  users at all the app runs in single-user mode, where every request is the local admin; that
  is only allowed on a loopback address (`check_can_start`).
- hf: Hugging Face sign-in on a Space. Admins are the usernames in FTAPP_ADMINS, everyone
  else signed in is a reviewer, and anonymous visitors may only read the About page.

The signed-in name always comes from the request (Gradio's session), never from a form field.
Every UI handler calls `require_role` through `ftapp.ui.common.guarded`.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from dataclasses import dataclass

import sqlite_utils
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ftapp.errors import Conflict, Forbidden, NotFound, ValidationError
from ftapp.records import Role
from ftapp.settings import Settings
from ftapp.signin import end_user_sessions
from ftapp.store import users as store
from ftapp.store.db import write_transaction

LOCAL_ADMIN = "admin"
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD_LENGTH = 8
# How much each role may do: a handler that needs a role accepts it and every role above.
RANK = {Role.VISITOR: 0, Role.REVIEWER: 1, Role.ADMIN: 2}

# argon2-cffi's defaults are RFC 9106's low-memory profile (Argon2id, 64 MiB, 3 passes).
_hasher = PasswordHasher()


@functools.cache
def _unknown_user_hash() -> str:
    """Verified against when the name is unknown, so a wrong name costs as long as a wrong
    password (no telling which names exist by timing)."""
    return _hasher.hash("no such user: this hash only costs time")


@dataclass(frozen=True)
class User:
    name: str
    role: Role

    @property
    def is_signed_in(self) -> bool:
        return self.role != Role.VISITOR


ANONYMOUS = User("", Role.VISITOR)


# --- who is asking ---------------------------------------------------------------------------


def resolve_user(
    db: sqlite_utils.Database,
    settings: Settings,
    username: str | None,
    hf_username: str | None = None,
) -> User:
    """The user behind a request: `username` is Gradio's password sign-in name, `hf_username`
    the Hugging Face account of an OAuth session (None when not signed in)."""
    if settings.auth == "hf":
        if not hf_username:
            return ANONYMOUS
        admins = {name.lower() for name in settings.admins}
        is_admin = "*" in admins or hf_username.lower() in admins
        return User(hf_username, Role.ADMIN if is_admin else Role.REVIEWER)
    if username is None:
        # No Gradio sign-in: single-user mode, unless users were added after the app started
        # (then everyone must sign in, which needs a restart: refuse rather than let them in).
        return User(LOCAL_ADMIN, Role.ADMIN) if store.count_users(db) == 0 else ANONYMOUS
    row = store.get_user(db, username)
    return User(row.name, row.role) if row else ANONYMOUS  # removed since signing in


def require_role(user: User, role: Role) -> User:
    if RANK[user.role] >= RANK[role]:
        return user
    if not user.is_signed_in:
        raise Forbidden("sign in first: this needs a signed-in " + str(role))
    raise Forbidden(f"{user.name} is a {user.role}; this needs an {role}")


def single_user_mode(db: sqlite_utils.Database, settings: Settings) -> bool:
    return settings.auth == "password" and store.count_users(db) == 0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_can_start(db: sqlite_utils.Database, settings: Settings, host: str) -> None:
    """Refuse to serve where it would be unsafe: single-user mode (no sign-in at all) beyond
    loopback, or Hugging Face sign-in outside a Space."""
    if single_user_mode(db, settings) and not is_loopback(host):
        raise ValidationError(
            f"no users are configured, so ftapp only serves on 127.0.0.1, not on {host}: "
            "every visitor would be an admin. Add one first: "
            "`ftapp users add NAME --role admin`, then start again"
        )
    if settings.auth == "hf":
        # Gradio's real OAuth routes need all of these (Spaces set them with `hf_oauth: true`);
        # without SYSTEM=spaces it mocks sign-in with the machine's own Hugging Face token.
        needed = ("SPACE_ID", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OPENID_PROVIDER_URL")
        missing = [name for name in needed if not os.environ.get(name)]
        if os.environ.get("SYSTEM") != "spaces":
            missing.append("SYSTEM=spaces")
        if missing:
            raise ValidationError(
                "FTAPP_AUTH=hf (Hugging Face sign-in) works inside a Space with `hf_oauth: true` "
                f"in its README; missing {', '.join(missing)}. Use FTAPP_AUTH=password elsewhere"
            )


# --- managing users --------------------------------------------------------------------------


def check_password(name: str, password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip().lower() == name.lower():
        raise ValidationError("password: must not be the user name")


def add_user(
    db: sqlite_utils.Database, name: str, role: Role | str, password: str, created_by: str
) -> None:
    if not USER_NAME.match(name or ""):
        raise ValidationError(
            "name: 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    try:
        role = Role(role)
    except ValueError:
        raise ValidationError(f"role: admin or reviewer, got {role!r}") from None
    if role == Role.VISITOR:
        raise ValidationError("role: admin or reviewer, got 'visitor'")
    check_password(name, password)
    with write_transaction(db):
        store.insert_user(db, name, role, _hasher.hash(password), created_by)


# A new password, a new role or a removal signs the user out everywhere (ftapp/signin.py): a
# browser left signed in, or a stolen cookie, must not outlive what the admin just changed.


def reset_password(db: sqlite_utils.Database, name: str, password: str) -> None:
    check_password(name, password)
    with write_transaction(db):
        store.set_password_hash(db, name, _hasher.hash(password))
        end_user_sessions(db, name)


def change_role(db: sqlite_utils.Database, name: str, role: Role | str) -> None:
    try:
        role = Role(role)
    except ValueError:
        raise ValidationError(f"role: admin or reviewer, got {role!r}") from None
    if role == Role.VISITOR:
        raise ValidationError("role: admin or reviewer, got 'visitor' (to take every right "
                              "away, remove the user)")  # fmt: skip
    with write_transaction(db):
        _keep_an_admin(db, name, leaving=role != Role.ADMIN)
        store.set_role(db, name, role)
        end_user_sessions(db, name)


def remove_user(db: sqlite_utils.Database, name: str) -> None:
    """Remove a user: they can't sign in any more and every session of theirs ends. Their
    votes and labels stay, under their name."""
    with write_transaction(db):
        _keep_an_admin(db, name, leaving=True)
        end_user_sessions(db, name)
        store.delete_user(db, name)


def _keep_an_admin(db: sqlite_utils.Database, name: str, *, leaving: bool) -> None:
    """Refuse to leave reviewers without any admin (nobody could manage the app from the
    browser); removing the very last user is fine: the app goes back to single-user mode."""
    row = store.get_user(db, name)
    if row is None:
        raise NotFound(f"no user named {name!r}")
    only_admin = row.role == Role.ADMIN and store.count_users(db, Role.ADMIN) == 1
    if leaving and only_admin and store.count_users(db) > 1:
        raise Conflict(f"{name} is the only admin: make another user an admin first")


def list_users(db: sqlite_utils.Database) -> list[store.UserRow]:
    return store.list_users(db)


def verify_password(db: sqlite_utils.Database, name: str, password: str) -> bool:
    """Gradio's sign-in check. Upgrades the stored hash when the hashing parameters changed."""
    row = store.get_user(db, name or "")
    try:
        _hasher.verify(row.password_hash if row else _unknown_user_hash(), password or "")
    except (VerificationError, InvalidHashError):
        return False
    if row is None:
        return False
    if _hasher.check_needs_rehash(row.password_hash):
        with write_transaction(db):
            store.set_password_hash(db, name, _hasher.hash(password))
    return True
