"""Sign-in sessions and sign-in throttling, kept in SQLite so every process agrees.

A password sign-in gives the browser a random token (Gradio's cookie). The web app records a
SHA-256 of it here, and every request's token must still have its row: a password reset, a
role change, a removal (`ftapp users ...`, from any process) or a sign-out deletes the user's
rows, so their browsers are signed out at their next request. A session also ends after
`session_idle_minutes` unused and `session_max_hours` after signing in.

Throttling: failed sign-ins are counted per user name and per address over the last
`WINDOW`. From a name's `DELAY_AFTER`th failure each further try for it waits longer (0.25,
0.5, 1 ... s, at most `MAX_DELAY_S`). At `USER_LOCKOUT` failures for a name, or
`ADDRESS_LOCKOUT` from an address, sign-in is refused until `LOCKOUT` after the last
failure, even with the right password. A success clears its name's count (not its
address's: an attacker's own account must not reset the count of the address they guess
from). Every attempt is logged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlite_utils

from ftapp.settings import Settings
from ftapp.store import sign_ins as store
from ftapp.store import users as users_store
from ftapp.store.db import write_transaction

WINDOW = timedelta(minutes=15)
DELAY_AFTER = 3
FIRST_DELAY_S = 0.25
MAX_DELAY_S = 4.0
USER_LOCKOUT = 10
ADDRESS_LOCKOUT = 30
LOCKOUT = timedelta(minutes=15)
# A session's last use is written at most this often (one write a minute, not one a request).
TOUCH_EVERY = timedelta(seconds=60)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


# --- sessions --------------------------------------------------------------------------------


def start_session(db: sqlite_utils.Database, settings: Settings, token: str, user_name: str,
                  address: str, now: datetime | None = None) -> None:  # fmt: skip
    """Record a successful sign-in: the session and the log line, together."""
    now = now or datetime.now(UTC)
    with write_transaction(db):
        _forget_expired(db, settings, now)
        store.insert_session(db, token_hash(token), user_name, address, _iso(now))
        store.insert_attempt(db, user_name, address, True, store.SIGNED_IN, _iso(now))


def session_user(db: sqlite_utils.Database, settings: Settings, token: str,
                 now: datetime | None = None) -> str | None:  # fmt: skip
    """The user a session token belongs to, or None: never recorded, ended, or expired (an
    expired one is deleted)."""
    now = now or datetime.now(UTC)
    hashed = token_hash(token)
    row = store.get_session(db, hashed)
    if row is None:
        return None
    if _expired(row, settings, now):
        with write_transaction(db):
            store.delete_session(db, hashed)
        return None
    if now - _parse(row.last_seen_at) >= TOUCH_EVERY:
        with write_transaction(db):
            store.touch_session(db, hashed, _iso(now))
    return row.user_name


def end_session(db: sqlite_utils.Database, token: str) -> None:
    with write_transaction(db):
        store.delete_session(db, token_hash(token))


def end_user_sessions(db: sqlite_utils.Database, user_name: str) -> int:
    """Sign a user out everywhere. Joins the caller's transaction when there is one."""
    with write_transaction(db):
        return store.delete_user_sessions(db, user_name)


def _expired(row: store.SessionRow, settings: Settings, now: datetime) -> bool:
    too_old = now - _parse(row.created_at) >= timedelta(hours=settings.session_max_hours)
    idle = now - _parse(row.last_seen_at) >= timedelta(minutes=settings.session_idle_minutes)
    return too_old or idle


def _forget_expired(db: sqlite_utils.Database, settings: Settings, now: datetime) -> None:
    store.delete_sessions_older_than(
        db,
        created_before=_iso(now - timedelta(hours=settings.session_max_hours)),
        seen_before=_iso(now - timedelta(minutes=settings.session_idle_minutes)),
    )


# --- throttling ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throttle:
    """What to do with a sign-in attempt before checking its password."""

    delay_s: float  # wait this long first
    locked_for_s: float  # > 0: refuse it, whatever the password; try again after this long

    @property
    def is_locked(self) -> bool:
        return self.locked_for_s > 0


def throttle_for(db: sqlite_utils.Database, user_name: str, address: str,
                 now: datetime | None = None) -> Throttle:  # fmt: skip
    now = now or datetime.now(UTC)
    since = _iso(now - WINDOW)
    by_user = store.failures_since(db, "user_name", user_name, since, cleared_by_success=True)
    by_address = store.failures_since(db, "address", address, since, cleared_by_success=False)
    locked_until = None
    if len(by_user) >= USER_LOCKOUT:
        locked_until = _parse(by_user[-1]) + LOCKOUT
    if len(by_address) >= ADDRESS_LOCKOUT:
        locked_until = max(locked_until or now, _parse(by_address[-1]) + LOCKOUT)
    if locked_until is not None and locked_until > now:
        return Throttle(0.0, (locked_until - now).total_seconds())
    # Delays follow the name only: one address guessing many names is stopped by its lockout,
    # and a shared address (an office, a proxy) doesn't slow everyone behind it.
    if len(by_user) < DELAY_AFTER:
        return Throttle(0.0, 0.0)
    delay = FIRST_DELAY_S * 2.0 ** (len(by_user) - DELAY_AFTER)
    return Throttle(min(delay, MAX_DELAY_S), 0.0)


def record_failure(db: sqlite_utils.Database, user_name: str, address: str, *, locked: bool,
                   now: datetime | None = None) -> None:  # fmt: skip
    """Log a refused sign-in: locked out, or a wrong name or password (logged apart for
    admins; the person signing in is told the same for both)."""
    if locked:
        outcome = store.LOCKED_OUT
    elif users_store.get_user(db, user_name) is None:
        outcome = store.UNKNOWN_USER
    else:
        outcome = store.WRONG_PASSWORD
    with write_transaction(db):
        store.insert_attempt(db, user_name, address, False, outcome, _iso(now or datetime.now(UTC)))


def lockout_message(throttle: Throttle) -> str:
    minutes = max(1, round(throttle.locked_for_s / 60))
    return (
        f"Too many failed sign-ins for this name or from this address: try again in about "
        f"{minutes} minute{'s' if minutes != 1 else ''}."
    )


def sign_in_log(db: sqlite_utils.Database, limit: int = 100,
                user_name: str | None = None) -> list[store.AttemptRow]:  # fmt: skip
    """The latest sign-in attempts, newest first (the About tab, `ftapp users log`)."""
    return store.recent_attempts(db, limit, user_name)
