"""Migrations of one feature: users, sign-in sessions and sign-in attempts.
Append-only, like every migration."""

from __future__ import annotations

import sqlite_utils

from ftapp.store.migrations.script import run_script


def m006_users(db: sqlite_utils.Database) -> None:
    # Password sign-in: who may sign in, with which role. Only an Argon2id hash is stored.
    # Votes and labels keep the user's name as text, so removing a user keeps their history.
    run_script(
        db,
        """
        CREATE TABLE users (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL CHECK (role IN ('admin', 'reviewer')),
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            password_changed_at TEXT NOT NULL
        );
        """,
    )


def m008_sign_in_sessions(db: sqlite_utils.Database) -> None:
    """Why: sign-in sessions kept on the server, so that a password reset, a removal, a role
    change or a sign-out ends them at once (Gradio's own tokens live in the web process's
    memory and never expire), and a log of sign-in attempts for rate limiting and for admins.

    - sign_in_sessions: one row per signed-in browser, keyed by a SHA-256 of the cookie's token
      (the token itself is never stored); ending a session deletes its row.
    - sign_in_attempts: every sign-in, failed or not, with the address it came from.
    """
    run_script(
        db,
        """
        CREATE TABLE sign_in_sessions (
            token_hash TEXT PRIMARY KEY,
            user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            address TEXT NOT NULL,
            created_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL
        );
        CREATE INDEX sign_in_sessions_user ON sign_in_sessions(user_name);
        CREATE TABLE sign_in_attempts (
            id INTEGER PRIMARY KEY,
            user_name TEXT NOT NULL,
            address TEXT NOT NULL,
            succeeded INTEGER NOT NULL CHECK (succeeded IN (0, 1)),
            outcome TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX sign_in_attempts_user ON sign_in_attempts(user_name, at);
        CREATE INDEX sign_in_attempts_address ON sign_in_attempts(address, at);
        """,
    )
