"""The store: pragmas, migrations applied once and in order, all-or-nothing writes."""

import sqlite3
import threading

import pytest

from ftapp.store.db import connect, open_db, write_transaction
from ftapp.store.migrations import migrations


def test_fresh_database_has_schema_and_pragmas(tmp_path):
    db = open_db(tmp_path / "sub" / "ftapp.db")
    assert db.journal_mode == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    tables = set(db.table_names())
    assert {"datasets", "imports", "examples", "example_events", "dataset_versions",
            "version_examples", "base_models"} <= tables  # fmt: skip
    assert [m.name for m in migrations.applied(db)] == [m.name for m in migrations._migrations]


def test_open_twice_applies_nothing_new(tmp_path):
    path = tmp_path / "ftapp.db"
    open_db(path).close()
    db = open_db(path)
    assert db["_sqlite_migrations"].count == len(migrations._migrations)


def test_upgrade_from_first_migration_keeps_data(tmp_path):
    """A database made by an older release (only m001) upgrades without losing rows."""
    path = tmp_path / "old.db"
    old = connect(path)
    migrations.apply(old, stop_before="m002_base_models")
    assert "base_models" not in old.table_names()
    old["datasets"].insert({"name": "kept", "created_at": "t", "created_by": "u"})
    old.close()
    db = open_db(path)
    assert "base_models" in db.table_names()
    assert [row["name"] for row in db["datasets"].rows] == ["kept"]


def test_write_transaction_rolls_back_everything(tmp_path):
    db = open_db(tmp_path / "ftapp.db")
    with pytest.raises(RuntimeError), write_transaction(db):
        db["datasets"].insert({"name": "a", "created_at": "t", "created_by": "u"})
        with write_transaction(db):  # nested: a savepoint inside the same transaction
            db["datasets"].insert({"name": "b", "created_at": "t", "created_by": "u"})
        raise RuntimeError("boom")
    assert db["datasets"].count == 0
    assert not db.conn.in_transaction


def test_foreign_keys_cascade_and_are_enforced(tmp_path):
    db = open_db(tmp_path / "ftapp.db")
    with pytest.raises(sqlite3.IntegrityError):
        db["imports"].insert({"dataset_id": 42, "file_name": "f", "file_type": "jsonl",
                              "source_format": "messages", "on_error": "skip", "n_rows": 0,
                              "n_imported": 0, "n_rejected": 0, "n_duplicates": 0,
                              "problems_json": "[]", "duplicates_json": "[]",
                              "created_at": "t", "created_by": "u"})  # fmt: skip


def test_concurrent_writers_do_not_fail(tmp_path):
    """Four threads, each with its own connection, write at once: no busy errors, no loss."""
    path = tmp_path / "ftapp.db"
    open_db(path).close()
    errors = []

    def writer(n):
        db = connect(path)
        try:
            for i in range(50):
                with write_transaction(db):
                    count = db.execute("SELECT COUNT(*) FROM datasets").fetchone()[0]
                    db["datasets"].insert({"name": f"w{n}-{i}-{count}", "created_at": "t",
                                           "created_by": "u"})  # fmt: skip
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert connect(path)["datasets"].count == 200


def test_migrations_apply_in_the_order_of_their_numbers():
    """The steps live in one module per feature; STEPS alone sets the order they run in."""
    from ftapp.store.migrations import STEPS

    names = [step.__name__ for step in STEPS]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert [int(name[1:4]) for name in names] == list(range(1, len(names) + 1))


def test_a_thread_gets_its_connection_again_and_a_nested_unit_of_work_its_own(tmp_path):
    from ftapp.store.db import ThreadConnections

    open_db(tmp_path / "t.db").close()
    connections = ThreadConnections(tmp_path / "t.db")
    with connections.connection() as first:
        first.execute("CREATE TABLE notes (text TEXT)")
        with connections.connection() as nested:
            assert nested is not first  # the outer unit of work still uses `first`
    with connections.connection() as again:
        assert again is nested  # the outer one was closed: one idle connection a thread
        # Left uncommitted, as a failed unit of work may: rolled back, as closing did.
        again.conn.execute("INSERT INTO notes VALUES ('lost')")
        assert again.conn.in_transaction
    with connections.connection() as after:
        assert after is again and not after.conn.in_transaction
        assert after.execute("SELECT COUNT(*) FROM notes").fetchone()[0] == 0
    seen = []

    def other_thread() -> None:
        with connections.connection() as db:
            seen.append(db)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert seen[0] is not after  # a connection never crosses threads
