"""The `users` table: names, roles and password hashes for password sign-in."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import sqlite_utils

from ftapp.errors import Conflict, NotFound
from ftapp.records import Role
from ftapp.timeutil import utc_now


@dataclass(frozen=True)
class UserRow:
    name: str
    role: Role
    password_hash: str
    created_at: str
    created_by: str
    password_changed_at: str


def _row(row: dict) -> UserRow:
    return UserRow(**{**row, "role": Role(row["role"])})


def insert_user(
    db: sqlite_utils.Database, name: str, role: Role, password_hash: str, created_by: str
) -> None:
    now = utc_now()
    try:
        db["users"].insert(
            {
                "name": name,
                "role": str(role),
                "password_hash": password_hash,
                "created_at": now,
                "created_by": created_by,
                "password_changed_at": now,
            }
        )
    except sqlite3.IntegrityError:
        raise Conflict(f"user {name!r} already exists") from None


def get_user(db: sqlite_utils.Database, name: str) -> UserRow | None:
    rows = list(db.query("SELECT * FROM users WHERE name = ?", [name]))
    return _row(rows[0]) if rows else None


def list_users(db: sqlite_utils.Database) -> list[UserRow]:
    return [_row(r) for r in db.query("SELECT * FROM users ORDER BY role, name")]


def count_users(db: sqlite_utils.Database, role: Role | None = None) -> int:
    if role is None:
        return db.execute("SELECT count(*) FROM users").fetchone()[0]
    return db.execute("SELECT count(*) FROM users WHERE role = ?", [str(role)]).fetchone()[0]


def set_password_hash(db: sqlite_utils.Database, name: str, password_hash: str) -> None:
    cursor = db.execute(
        "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE name = ?",
        [password_hash, utc_now(), name],
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no user named {name!r}")


def set_role(db: sqlite_utils.Database, name: str, role: Role) -> None:
    if db.execute("UPDATE users SET role = ? WHERE name = ?", [str(role), name]).rowcount == 0:
        raise NotFound(f"no user named {name!r}")


def delete_user(db: sqlite_utils.Database, name: str) -> None:
    if db.execute("DELETE FROM users WHERE name = ?", [name]).rowcount == 0:
        raise NotFound(f"no user named {name!r}")
