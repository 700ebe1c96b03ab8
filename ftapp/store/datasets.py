"""Tables `datasets`, `imports`, `examples` and `example_events`: reading and writing rows.

Functions here hold the SQL and turn rows into records; the rules (what is a valid edit,
how splits are drawn) live in ftapp.data.
"""

from __future__ import annotations

import json
import operator
import re
from typing import Any

import sqlite_utils

from ftapp.errors import NotFound, ValidationError
from ftapp.records import Dataset, DatasetKind, Example, ExampleStatus, Split, parse_choice
from ftapp.store.db import to_record
from ftapp.timeutil import utc_now

DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$")


def check_dataset_name(name: str) -> str:
    name = (name or "").strip()
    if not DATASET_NAME.match(name) or ".." in name:
        raise ValidationError(
            f"dataset name {name!r}: use 1-100 letters, digits, spaces, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def get_dataset(db: sqlite_utils.Database, name: str) -> Dataset:
    row = next(db.query("SELECT * FROM datasets WHERE name = ?", [name]), None)
    if row is None:
        raise NotFound(f"no dataset named {name!r}")
    return _dataset(row)


def find_dataset(db: sqlite_utils.Database, name: str) -> Dataset | None:
    row = next(db.query("SELECT * FROM datasets WHERE name = ?", [name]), None)
    return _dataset(row) if row else None


def create_dataset(
    db: sqlite_utils.Database, name: str, user: str, kind: DatasetKind = DatasetKind.SFT
) -> Dataset:
    name = check_dataset_name(name)
    db["datasets"].insert(
        {"name": name, "kind": str(kind), "created_at": utc_now(), "created_by": user}
    )
    return get_dataset(db, name)


def list_datasets(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every dataset with its example counts per status and its number of versions."""
    return list(
        db.query(
            """
            SELECT d.name, d.created_at,
                   COUNT(e.id) AS examples,
                   COALESCE(SUM(e.status = 'pending'), 0) AS pending,
                   COALESCE(SUM(e.status = 'accepted'), 0) AS accepted,
                   COALESCE(SUM(e.status = 'rejected'), 0) AS rejected,
                   (SELECT COUNT(*) FROM dataset_versions v WHERE v.dataset_id = d.id) AS versions
            FROM datasets d LEFT JOIN examples e ON e.dataset_id = d.id
            GROUP BY d.id ORDER BY d.name
            """
        )
    )


def set_description(db: sqlite_utils.Database, name: str, description: str) -> None:
    db["datasets"].update(get_dataset(db, name).id, {"description": description})


def delete_dataset(db: sqlite_utils.Database, name: str) -> None:
    dataset = get_dataset(db, name)
    db.execute("DELETE FROM datasets WHERE id = ?", [dataset.id])


def set_split_config(
    db: sqlite_utils.Database, dataset_id: int, ratios: tuple[float, ...], seed: int
) -> None:
    db.execute(
        "UPDATE datasets SET split_ratios_json = ?, split_seed = ? WHERE id = ?",
        [json.dumps(list(ratios)), seed, dataset_id],
    )


def content_hashes(db: sqlite_utils.Database, dataset_id: int) -> dict[str, int]:
    """content hash -> id of the first example with it, for duplicate detection."""
    rows = db.execute(
        "SELECT content_hash, MIN(id) FROM examples WHERE dataset_id = ? GROUP BY content_hash",
        [dataset_id],
    )
    return dict(rows.fetchall())


def insert_examples(db: sqlite_utils.Database, rows: list[dict[str, Any]]) -> None:
    """Insert example rows in order; every row has the same columns (two or more). Opens no
    transaction: call inside the caller's. One prepared statement for all the rows, because
    sqlite-utils' insert_all rebuilds and checks each row in Python (a third slower)."""
    if not rows:
        return
    columns = list(rows[0])
    values = operator.itemgetter(*columns)
    sql = f"INSERT INTO examples ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    db.conn.executemany(sql, map(values, rows))


def examples_per_status(db: sqlite_utils.Database, dataset_id: int) -> dict[str, int]:
    """status -> number of the dataset's examples with it (statuses with none are absent)."""
    rows = db.execute(
        "SELECT status, COUNT(*) FROM examples WHERE dataset_id = ? GROUP BY status",
        [dataset_id],
    )
    return dict(rows.fetchall())


def examples_per_split(db: sqlite_utils.Database, dataset_id: int) -> dict[str, int]:
    """split ("none" for no split yet) -> number of the dataset's examples that are not
    rejected in it (splits with none are absent)."""
    rows = db.execute(
        "SELECT COALESCE(split, 'none'), COUNT(*) FROM examples "
        "WHERE dataset_id = ? AND status != 'rejected' GROUP BY split",
        [dataset_id],
    )
    return dict(rows.fetchall())


def examples_per_tag(db: sqlite_utils.Database, dataset_id: int) -> dict[str, int]:
    """tag -> number of the dataset's examples with it, most used first, then by name."""
    rows = db.execute(
        "SELECT t.value, COUNT(*) FROM examples e, json_each(e.tags_json) t "
        "WHERE e.dataset_id = ? GROUP BY t.value ORDER BY COUNT(*) DESC, t.value",
        [dataset_id],
    )
    return dict(rows.fetchall())


def token_counts(
    db: sqlite_utils.Database, dataset_id: int, status: str | None = None
) -> list[int]:
    """The token count of every counted example of the dataset (optionally of one status)."""
    sql = "SELECT n_tokens FROM examples WHERE dataset_id = ? AND n_tokens IS NOT NULL"
    params: list[Any] = [dataset_id]
    if status:
        sql += " AND status = ?"
        params.append(status)
    return [n for (n,) in db.execute(sql, params)]


def preference_counts(db: sqlite_utils.Database, dataset_id: int) -> dict[str, int]:
    """How many of the dataset's examples are pairs (a rejected answer) and how many are
    unpaired rows labelled good or bad: {"pairs": n, "good": n, "bad": n}."""
    row = db.execute(
        "SELECT COALESCE(SUM(rejected_json IS NOT NULL), 0), COALESCE(SUM(label = 1), 0), "
        "COALESCE(SUM(label = 0), 0) FROM examples WHERE dataset_id = ?",
        [dataset_id],
    ).fetchone()
    return dict(zip(("pairs", "good", "bad"), row, strict=True))


# --- imports -------------------------------------------------------------------------------


def list_imports(db: sqlite_utils.Database, dataset_id: int) -> list[dict[str, Any]]:
    """The dataset's imports in order, with their row counts (not their problems)."""
    return list(
        db.query(
            "SELECT id, file_name, file_type, source_format, n_rows, n_imported, n_rejected, "
            "n_duplicates, created_at, created_by FROM imports WHERE dataset_id = ? ORDER BY id",
            [dataset_id],
        )
    )


def find_import(db: sqlite_utils.Database, import_id: int) -> dict[str, Any] | None:
    return next(db.query("SELECT * FROM imports WHERE id = ?", [import_id]), None)


# --- examples ------------------------------------------------------------------------------


def get_example(db: sqlite_utils.Database, example_id: int) -> Example:
    row = next(db.query("SELECT * FROM examples WHERE id = ?", [example_id]), None)
    if row is None:
        raise NotFound(f"no example #{example_id}")
    return _example(row)


def query_examples(
    db: sqlite_utils.Database,
    dataset_id: int,
    *,
    status: str | None = None,
    split: str | None = None,
    tag: str | None = None,
    search: str | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[list[Example], int]:
    """One page of a dataset's examples matching the filters, and how many match in all."""
    clause, params = _filter_clause(dataset_id, status, split, tag, search)
    total = db.execute(f"SELECT COUNT(*) FROM examples WHERE {clause}", params).fetchone()[0]
    rows = db.query(
        f"SELECT * FROM examples WHERE {clause} ORDER BY id LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    return [_example(row) for row in rows], total


def matching_example_ids(
    db: sqlite_utils.Database,
    dataset_id: int,
    *,
    status: str | None = None,
    split: str | None = None,
    tag: str | None = None,
    search: str | None = None,
) -> list[int]:
    clause, params = _filter_clause(dataset_id, status, split, tag, search)
    rows = db.execute(f"SELECT id FROM examples WHERE {clause} ORDER BY id", params)
    return [example_id for (example_id,) in rows]


def example_statuses(db: sqlite_utils.Database, example_ids: list[int]) -> dict[int, str]:
    """id -> status for the given examples (missing ids are absent)."""
    statuses = {}
    for start in range(0, len(example_ids), 500):
        chunk = example_ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = db.execute(f"SELECT id, status FROM examples WHERE id IN ({marks})", chunk)
        statuses.update(rows.fetchall())
    return statuses


def set_statuses(
    db: sqlite_utils.Database, changes: list[tuple[int, str]], status: str, user: str, at: str
) -> None:
    """Give each (example id, old status) of `changes` the new status, reviewed by `user` at
    `at`, and record the change as an event. Opens no transaction: call inside the caller's."""
    db.conn.executemany(
        "UPDATE examples SET status = ?, reviewed_at = ?, reviewed_by = ? WHERE id = ?",
        [(status, at, user, example_id) for example_id, _ in changes],
    )
    db.conn.executemany(
        "INSERT INTO example_events (example_id, action, detail_json, user_name, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [(i, status, json.dumps({"from": old}), user, at) for i, old in changes],
    )


def accepted_examples(
    db: sqlite_utils.Database, dataset_id: int, split: str | None = None
) -> list[dict[str, Any]]:
    """The dataset's accepted examples (optionally of one split) in id order, in the shape of
    a frozen version's rows (versions.version_rows)."""
    sql = (
        "SELECT id AS example_id, split, messages_json, tools_json, rejected_json, label "
        "FROM examples WHERE dataset_id = ? AND status = 'accepted'"
    )
    sql += (" AND split = ?" if split else "") + " ORDER BY id"
    params: list[Any] = [dataset_id] + ([split] if split else [])
    return [decode_example_row(row) for row in db.query(sql, params)]


def decode_example_row(row: dict[str, Any]) -> dict[str, Any]:
    """An example as training, freezing and exporting read it: example_id, split, messages,
    tools, and for preference data the rejected answer or the label (None otherwise)."""
    return {
        "example_id": row["example_id"],
        "split": row["split"],
        "messages": json.loads(row["messages_json"]),
        "tools": json.loads(row["tools_json"]) if row["tools_json"] else None,
        "rejected": json.loads(row["rejected_json"]) if row["rejected_json"] else None,
        "label": None if row["label"] is None else bool(row["label"]),
    }


def split_candidates(db: sqlite_utils.Database, dataset_id: int) -> list[tuple[int, str]]:
    """(id, content hash) of the dataset's examples that are not rejected, in no set order."""
    return db.execute(
        "SELECT id, content_hash FROM examples WHERE dataset_id = ? AND status != 'rejected'",
        [dataset_id],
    ).fetchall()


def set_splits(db: sqlite_utils.Database, dataset_id: int, splits: dict[int, str]) -> None:
    """Take the split away from the dataset's rejected examples, then give each example id of
    `splits` its split (call inside a write transaction)."""
    db.execute(
        "UPDATE examples SET split = NULL WHERE dataset_id = ? AND status = 'rejected'",
        [dataset_id],
    )
    db.conn.executemany(
        "UPDATE examples SET split = ? WHERE id = ?",
        [(split, example_id) for example_id, split in splits.items()],
    )


def _filter_clause(
    dataset_id: int, status: str | None, split: str | None, tag: str | None, search: str | None
) -> tuple[str, list[Any]]:
    """WHERE clause and parameters for the example filters. split "none" means no split yet;
    the search looks in message texts and notes, case-insensitively, as a bound parameter."""
    where, params = ["dataset_id = ?"], [dataset_id]
    if status:
        where.append("status = ?")
        params.append(parse_choice(ExampleStatus, status, "status").value)
    if split == "none":
        where.append("split IS NULL")
    elif split:
        where.append("split = ?")
        params.append(parse_choice(Split, split, "split").value)
    if tag:
        where.append("EXISTS (SELECT 1 FROM json_each(examples.tags_json) WHERE value = ?)")
        params.append(tag)
    if search:
        where.append(
            "(instr(lower(note), lower(?)) > 0 OR EXISTS (SELECT 1 FROM "
            "json_each(examples.messages_json) m "
            "WHERE instr(lower(json_extract(m.value, '$.content')), lower(?)) > 0))"
        )
        params += [search, search]
    return " AND ".join(where), params


def update_example(
    db: sqlite_utils.Database,
    example_id: int,
    changes: dict[str, Any],
    *,
    action: str,
    detail: dict[str, Any],
    user: str,
) -> None:
    """Apply column changes to one example and record who did what (call inside a transaction)."""
    now = utc_now()
    db["examples"].update(example_id, {**changes, "updated_at": now, "updated_by": user})
    record_event(db, example_id, action, detail, user, now)


def record_event(
    db: sqlite_utils.Database,
    example_id: int,
    action: str,
    detail: dict[str, Any],
    user: str,
    at: str | None = None,
) -> None:
    db["example_events"].insert(
        {
            "example_id": example_id,
            "action": action,
            "detail_json": json.dumps(detail, ensure_ascii=False),
            "user_name": user,
            "created_at": at or utc_now(),
        }
    )


def example_events(db: sqlite_utils.Database, example_id: int) -> list[dict[str, Any]]:
    return list(
        db.query(
            "SELECT action, detail_json, user_name, created_at FROM example_events "
            "WHERE example_id = ? ORDER BY id",
            [example_id],
        )
    )


def first_event_detail(
    db: sqlite_utils.Database, example_id: int, key: str
) -> dict[str, Any] | None:
    """The detail of the example's earliest event whose detail holds `key`, or None. The first
    change of a field records the value it had as imported (e.g. `rejected_before`)."""
    row = db.execute(
        "SELECT detail_json FROM example_events WHERE example_id = ? "
        "AND json_type(detail_json, ?) IS NOT NULL ORDER BY id LIMIT 1",
        [example_id, f"$.{key}"],
    ).fetchone()
    return json.loads(row[0]) if row else None


def _dataset(row: dict[str, Any]) -> Dataset:
    ratios = json.loads(row["split_ratios_json"]) if row["split_ratios_json"] else None
    return to_record(Dataset, row, split_ratios=tuple(ratios) if ratios else None,
                     kind=DatasetKind(row["kind"]))  # fmt: skip


def _example(row: dict[str, Any]) -> Example:
    messages = json.loads(row["messages_json"])
    original = row["original_messages_json"]
    return to_record(
        Example,
        row,
        messages=messages,
        original_messages=json.loads(original) if original else messages,
        raw=json.loads(row["raw_json"]),
        tools=json.loads(row["tools_json"]) if row["tools_json"] else None,
        status=ExampleStatus(row["status"]),
        split=Split(row["split"]) if row["split"] else None,
        tags=json.loads(row["tags_json"]),
        rejected=json.loads(row["rejected_json"]) if row["rejected_json"] else None,
        label=None if row["label"] is None else bool(row["label"]),
    )
