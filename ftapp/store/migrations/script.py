"""Running a migration's SQL script, statement by statement."""

from __future__ import annotations

import sqlite_utils


def run_script(db: sqlite_utils.Database, script: str) -> None:
    for statement in script.split(";\n"):
        if statement.strip():
            db.execute(statement)
