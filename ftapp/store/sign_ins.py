"""The `sign_in_sessions` and `sign_in_attempts` tables: who is signed in where, and every
sign-in tried. ftapp/signin.py decides what the rows mean."""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

# The outcomes that count towards a lockout; a refused "locked out" attempt doesn't (it would
# keep a user locked out for as long as an attacker keeps trying).
WRONG_PASSWORD, UNKNOWN_USER, LOCKED_OUT, SIGNED_IN = (
    "wrong password", "unknown user", "locked out", "signed in"
)  # fmt: skip
FAILED_OUTCOMES = (WRONG_PASSWORD, UNKNOWN_USER)


@dataclass(frozen=True)
class SessionRow:
    token_hash: str
    user_name: str
    address: str
    created_at: str
    last_seen_at: str


@dataclass(frozen=True)
class AttemptRow:
    id: int
    user_name: str
    address: str
    succeeded: bool
    outcome: str
    at: str


def insert_session(
    db: sqlite_utils.Database, token_hash: str, user_name: str, address: str, now: str
) -> None:
    db.execute(
        "INSERT INTO sign_in_sessions (token_hash, user_name, address, created_at, last_seen_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [token_hash, user_name, address, now, now],
    )


def get_session(db: sqlite_utils.Database, token_hash: str) -> SessionRow | None:
    rows = list(db.query("SELECT * FROM sign_in_sessions WHERE token_hash = ?", [token_hash]))
    return SessionRow(**rows[0]) if rows else None


def touch_session(db: sqlite_utils.Database, token_hash: str, now: str) -> None:
    sql = "UPDATE sign_in_sessions SET last_seen_at = ? WHERE token_hash = ?"
    db.execute(sql, [now, token_hash])


def delete_session(db: sqlite_utils.Database, token_hash: str) -> None:
    db.execute("DELETE FROM sign_in_sessions WHERE token_hash = ?", [token_hash])


def delete_user_sessions(db: sqlite_utils.Database, user_name: str) -> int:
    return db.execute("DELETE FROM sign_in_sessions WHERE user_name = ?", [user_name]).rowcount


def delete_sessions_older_than(db: sqlite_utils.Database, created_before: str,
                               seen_before: str) -> int:  # fmt: skip
    return db.execute(
        "DELETE FROM sign_in_sessions WHERE created_at < ? OR last_seen_at < ?",
        [created_before, seen_before],
    ).rowcount


def insert_attempt(db: sqlite_utils.Database, user_name: str, address: str, succeeded: bool,
                   outcome: str, now: str) -> None:  # fmt: skip
    db.execute(
        "INSERT INTO sign_in_attempts (user_name, address, succeeded, outcome, at)"
        " VALUES (?, ?, ?, ?, ?)",
        [user_name, address, int(succeeded), outcome, now],
    )


def failures_since(db: sqlite_utils.Database, column: str, value: str, since: str,
                   *, cleared_by_success: bool) -> list[str]:  # fmt: skip
    """When each failed sign-in (a wrong name or password) since `since` happened, for one user
    name or one address. With `cleared_by_success`, only those after the latest success count."""
    assert column in ("user_name", "address")  # a column name, never user input
    if cleared_by_success:
        last_success = db.execute(
            f"SELECT max(at) FROM sign_in_attempts WHERE {column} = ? AND succeeded = 1", [value]
        ).fetchone()[0]
        since = max(since, last_success or "")
    sql = (
        f"SELECT at FROM sign_in_attempts WHERE {column} = ? AND succeeded = 0"
        " AND outcome IN (?, ?) AND at > ? ORDER BY at"
    )
    return [row[0] for row in db.execute(sql, [value, *FAILED_OUTCOMES, since])]


def recent_attempts(db: sqlite_utils.Database, limit: int = 100,
                    user_name: str | None = None) -> list[AttemptRow]:  # fmt: skip
    where, params = ("WHERE user_name = ?", [user_name]) if user_name else ("", [])
    rows = db.query(
        f"SELECT * FROM sign_in_attempts {where} ORDER BY id DESC LIMIT ?", [*params, limit]
    )
    return [AttemptRow(**{**row, "succeeded": bool(row["succeeded"])}) for row in rows]
