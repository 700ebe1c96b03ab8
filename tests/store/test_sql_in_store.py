"""The SQL lives in ftapp/store/ (DESIGN.md, Layout): no other module of ftapp holds an SQL
statement, in a plain string or an f-string. Only ftapp/backup.py may set a PRAGMA on the copy
it makes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The start of a statement, not just its first word: "Select a job first." and "Create session"
# are labels, "SELECT id FROM jobs" and "UPDATE jobs SET ..." are SQL.
STATEMENT = re.compile(
    r"""^(?:SELECT\b.*\bFROM\b|SELECT\s+[\d(*'"]
        |INSERT\s+(?:OR\s+\w+\s+)?INTO\b
        |UPDATE\s+(?:OR\s+\w+\s+)?\w+\s+SET\b
        |DELETE\s+FROM\b
        |CREATE\s+(?:TEMP\s+|TEMPORARY\s+|UNIQUE\s+|VIRTUAL\s+)?(?:TABLE|INDEX|TRIGGER|VIEW)\b
        |PRAGMA\s+\w+)""",
    re.IGNORECASE | re.DOTALL | re.VERBOSE,
)

# path -> the statements (first words) it may hold, and why.
ALLOWED = {
    "ftapp/backup.py": {"PRAGMA"},  # the backup copy's journal mode, on a file that isn't ours
}


def sql_strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string constant or f-string of `source` that is an SQL statement;
    an f-string's replacement fields read as {}. Docstrings are prose and are skipped."""
    tree = ast.parse(source)
    skipped = set()  # docstrings, and the pieces of f-strings (read whole below)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skipped.add(id(first.value))
        elif isinstance(node, ast.JoinedStr):
            skipped.update(id(part) for part in node.values)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in skipped:
                continue
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                part.value if isinstance(part, ast.Constant) else "{}" for part in node.values
            )
        else:
            continue
        text = text.strip()
        if STATEMENT.match(text):
            found.add((node.lineno, text))
    return sorted(found)


def test_no_sql_outside_store():
    strays = []
    for path in sorted((ROOT / "ftapp").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name.startswith("ftapp/store/"):
            continue
        for line, text in sql_strings(path.read_text(encoding="utf-8")):
            if text.split(None, 1)[0].upper() not in ALLOWED.get(name, set()):
                strays.append(f"{name}:{line}: {text[:70]!r}")
    assert strays == [], "move these into a function of ftapp/store/:\n" + "\n".join(strays)


def test_the_check_finds_sql_and_spares_labels():
    source = '''
"""SELECT * FROM in a docstring is prose."""
cols = "id"
a = "SELECT id, status FROM examples WHERE id = ?"
b = f"  select {cols} from examples"
c = ("UPDATE jobs SET status = ? "
     "WHERE id = ?")
d = "insert or ignore into users (name) values (?)"
e = "DELETE FROM datasets WHERE id = ?"
f = "CREATE TABLE t (x)"
g = "PRAGMA foreign_keys = ON"
h = "SELECT 1"
labels = ["Select a job first.", "Create session", "create-session", "Delete old backups",
          "Update the model", "PRAGMA"]
'''
    assert [line for line, _ in sql_strings(source)] == [4, 5, 6, 8, 9, 10, 11, 12]
