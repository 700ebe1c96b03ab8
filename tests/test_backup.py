"""Backups and the whole-home export, on real SQLite files and a real writing subprocess."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ftapp.backup import (
    KEEP_BACKUPS,
    BackupThread,
    backup_database,
    export_everything,
    restore_home,
    write_periodic_backup,
)
from ftapp.errors import FtappError, NotFound, ValidationError
from ftapp.settings import Settings
from ftapp.store.db import open_db

# Inserts a pair of rows per transaction until the stop file appears: a backup that caught a
# transaction halfway would hold an odd number of rows.
WRITER = """
import sqlite3, sys, pathlib
db_path, stop = sys.argv[1], pathlib.Path(sys.argv[2])
conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
conn.execute("PRAGMA busy_timeout = 30000")
n = 0
while not stop.exists():
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO ticks (n, pad) VALUES (?, ?)", (n, "x" * 200))
    conn.execute("INSERT INTO ticks (n, pad) VALUES (?, ?)", (n, "y" * 200))
    conn.execute("COMMIT")
    n += 1
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    settings.ensure_dirs()
    db = open_db(settings.db_path)
    db["ticks"].create({"id": int, "n": int, "pad": str}, pk="id")
    db["ticks"].insert_all({"n": -1, "pad": "seed"} for _ in range(10))
    db.conn.close()
    return settings


def count_rows(path: Path, table: str = "ticks") -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def backup_names(settings: Settings) -> list[str]:
    if not settings.backups_dir.exists():  # ensure_dirs leaves it to the first backup
        return []
    return sorted(p.name for p in settings.backups_dir.iterdir() if p.name.startswith("ftapp-"))


def test_backup_while_another_process_writes_is_consistent(settings, tmp_path):
    # Some megabytes of padding so each backup takes long enough for the writer to commit
    # meanwhile.
    db = open_db(settings.db_path)
    db["padding"].insert_all({"blob": os.urandom(4096)} for _ in range(1500))
    db.conn.close()
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(settings.db_path), str(stop)])
    try:
        deadline = time.monotonic() + 30
        while count_rows(settings.db_path) < 200:
            assert writer.poll() is None, "the writer process died"
            assert time.monotonic() < deadline, "the writer never got going"
            time.sleep(0.01)
        grew_during_a_backup = False
        for i in range(5):
            target = tmp_path / "copies" / f"copy{i}.db"
            before = count_rows(settings.db_path)
            backup_database(settings.db_path, target)
            after = count_rows(settings.db_path)
            copied = count_rows(target)
            assert integrity(target) == "ok"
            assert before <= copied <= after
            assert (copied - 10) % 2 == 0, "a backup caught a transaction halfway"
            assert count_rows(target, "padding") == 1500
            grew_during_a_backup |= after > before
        assert writer.poll() is None, "the writer must still be writing"
        assert grew_during_a_backup, "the writer never committed while a backup ran"
    finally:
        stop.touch()
        writer.wait(timeout=30)
    # One self-contained file per backup: no -wal/-shm, no leftover temporary files.
    assert sorted(p.name for p in (tmp_path / "copies").iterdir()) == [
        f"copy{i}.db" for i in range(5)
    ]


def test_backup_of_a_missing_database_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="nothing.db"):
        backup_database(tmp_path / "nothing.db", tmp_path / "out" / "copy.db")
    assert not (tmp_path / "nothing.db").exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_backup_into_an_unwritable_folder_fails_cleanly(settings, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(FtappError, match="locked"):
            backup_database(settings.db_path, folder / "copy.db")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_backup_where_the_folder_is_a_file_fails_cleanly(settings, tmp_path):
    # Runs as root too: no permission bits involved.
    not_a_folder = tmp_path / "plain-file"
    not_a_folder.write_text("mine")
    with pytest.raises(FtappError, match="plain-file"):
        backup_database(settings.db_path, not_a_folder / "copy.db")
    assert not_a_folder.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "plain-file"]


def test_rotation_keeps_the_five_newest_and_nothing_else_is_touched(settings):
    settings.backups_dir.mkdir(parents=True, exist_ok=True)
    unrelated = ["notes.txt", "ftapp-keep-me.db", "ftapp-20200101T000000Z.db.bak",
                 "my-ftapp-20200101T000000Z.db"]  # fmt: skip
    for name in unrelated:
        (settings.backups_dir / name).write_text("mine")
    # Matches the pattern and is the oldest: rotation removes it.
    (settings.backups_dir / "ftapp-20200101T000000Z.db").write_text("old backup")
    start = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    written = [write_periodic_backup(settings, now=start + timedelta(minutes=i)) for i in range(8)]

    expected = [f"ftapp-20240501T12{i:02d}00Z.db" for i in range(3, 8)]
    assert sorted(p.name for p in settings.backups_dir.iterdir()) == sorted(expected + unrelated)
    assert [p.name for p in written[-KEEP_BACKUPS:]] == expected
    for name in unrelated:
        assert (settings.backups_dir / name).read_text() == "mine"
    for name in expected:
        assert count_rows(settings.backups_dir / name) == 10

    # A clock that went back: the new backup holds the newest data, so it stays.
    rewound = write_periodic_backup(settings, now=start - timedelta(days=1))
    assert rewound.exists()
    assert sorted(p.name for p in settings.backups_dir.iterdir()) == sorted(
        [rewound.name, *expected[1:], *unrelated]
    )


def test_periodic_backup_name_is_utc(settings):
    paris = datetime(2024, 5, 1, 14, 30, 5, tzinfo=UTC).astimezone()
    path = write_periodic_backup(settings, now=paris)
    assert path.name == "ftapp-20240501T143005Z.db"


def test_backup_thread_writes_repeatedly_and_stops_at_once(settings):
    thread = BackupThread(settings, interval_seconds=0.2)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        # Names have one-second resolution: two files means two backups seconds apart.
        while len(backup_names(settings)) < 2:
            assert time.monotonic() < deadline, "the thread wrote fewer than 2 backups"
            time.sleep(0.05)
    finally:
        thread.stop()
        thread.join(timeout=5)
    assert not thread.is_alive()
    for name in backup_names(settings):
        assert integrity(settings.backups_dir / name) == "ok"

    # A thread waiting an hour still ends as soon as it is asked to.
    slow = BackupThread(settings, interval_seconds=3600)
    slow.start()
    slow.stop()
    slow.join(timeout=5)
    assert not slow.is_alive()


def test_backup_thread_survives_a_failing_backup(settings, caplog):
    moved = settings.db_path.with_name("elsewhere.db")
    settings.db_path.rename(moved)
    thread = BackupThread(settings, interval_seconds=0.1)
    with caplog.at_level(logging.ERROR, logger="ftapp.backup"):
        thread.start()
        try:
            deadline = time.monotonic() + 15
            while not any("Periodic backup" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "the failure was never logged"
                time.sleep(0.05)
            assert thread.is_alive()
            moved.rename(settings.db_path)
            while not backup_names(settings):
                assert time.monotonic() < deadline, "no backup after the database came back"
                time.sleep(0.05)
        finally:
            thread.stop()
            thread.join(timeout=5)
    assert not thread.is_alive()


def test_backup_thread_refuses_backups_off(settings):
    with pytest.raises(ValidationError, match="above 0"):
        BackupThread(settings)  # backup_minutes defaults to 0


def make_home_files(settings: Settings, tmp_path: Path) -> dict[str, bytes]:
    """Files a user would lose, by path relative to the home; plus ones the export leaves out."""
    kept = {
        "uploads/qa.jsonl": b'{"prompt": "hi", "completion": "hello"}\n',
        "uploads/nested/raw.bin": os.urandom(3000),
        "adapters/run-1/adapter_model.safetensors": os.urandom(20000),
        "adapters/run-1/adapter_config.json": b'{"r": 8}',
        "exports/labels.csv": b"id,label\n1,good\n",
    }
    left_out = {
        "models/base/model.safetensors": b"weights",
        "logs/worker.log": b"log line\n",
    }
    for relative, data in {**kept, **left_out}.items():
        path = settings.home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    write_periodic_backup(settings)
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the home")
    (settings.uploads_dir / "link-out.txt").symlink_to(secret)
    return kept


def test_export_everything_and_restore(settings, tmp_path):
    kept = make_home_files(settings, tmp_path)
    # Rows still only in the -wal file of an open connection: a copy of the live ftapp.db
    # file would miss them.
    live = open_db(settings.db_path)
    live["ticks"].insert_all({"n": 1, "pad": "recent"} for _ in range(5))
    # Written inside exports/ on purpose: the zip must not pack itself.
    try:
        out = export_everything(settings, settings.exports_dir / "everything.zip")
    finally:
        live.conn.close()

    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        assert names == {*kept, "ftapp.db", "MANIFEST.json"}
        for relative, data in kept.items():
            assert archive.read(relative) == data
        manifest = json.loads(archive.read("MANIFEST.json"))
        archive.extract("ftapp.db", tmp_path / "unzipped")
    snapshot = tmp_path / "unzipped" / "ftapp.db"
    assert integrity(snapshot) == "ok"
    assert count_rows(snapshot) == 15

    created = datetime.fromisoformat(manifest["created_at"])
    assert created.utcoffset() == timedelta(0)
    parts = {part["name"]: part for part in manifest["parts"]}
    assert set(parts) == {"ftapp.db", "uploads/", "adapters/", "exports/"}
    assert parts["uploads/"]["files"] == 2
    assert parts["adapters/"]["bytes"] == len(kept["adapters/run-1/adapter_model.safetensors"]) + 8
    assert parts["exports/"]["files"] == 1
    assert manifest["skipped_outside_home"] == ["uploads/link-out.txt"]
    assert "empty FTAPP_HOME" in manifest["restore"]
    # No temporary zip or database snapshot left behind.
    assert sorted(p.name for p in settings.exports_dir.iterdir()) == [
        "everything.zip",
        "labels.csv",
    ]
    assert not [p for p in settings.home.iterdir() if p.name.startswith(".")]

    restored = tmp_path / "restored"  # does not exist yet
    restore_home(out, restored)
    files = {p.relative_to(restored).as_posix() for p in restored.rglob("*") if p.is_file()}
    assert files == {*kept, "ftapp.db", "MANIFEST.json"}
    assert sorted(p.name for p in restored.iterdir()) == [
        "MANIFEST.json",
        "adapters",
        "exports",
        "ftapp.db",
        "uploads",
    ]
    for relative, data in kept.items():
        assert (restored / relative).read_bytes() == data
    db = open_db(restored / "ftapp.db")
    assert db["ticks"].count == 15
    db.conn.close()

    empty = tmp_path / "empty"
    empty.mkdir()
    restore_home(out, empty)
    assert (empty / "adapters/run-1/adapter_config.json").read_bytes() == b'{"r": 8}'


def test_restore_refuses_a_home_that_is_not_empty(settings, tmp_path):
    out = export_everything(settings, tmp_path / "everything.zip")
    home = tmp_path / "busy"
    home.mkdir()
    (home / "keep.txt").write_text("mine")
    with pytest.raises(ValidationError, match="not empty"):
        restore_home(out, home)
    assert [p.name for p in home.iterdir()] == ["keep.txt"]


def evil_zip(path: Path, member: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("MANIFEST.json", json.dumps({"format": "ftapp-export"}))
        archive.writestr("uploads/fine.txt", "fine")
        archive.writestr(zipfile.ZipInfo(member), "evil")
    return path


@pytest.mark.parametrize("member", ["../evil.txt", "uploads/../../evil.txt", "/abs/evil.txt"])
def test_restore_refuses_members_outside_the_home_and_writes_nothing(tmp_path, member):
    archive = evil_zip(tmp_path / "evil.zip", member)
    home = tmp_path / "sub" / "home"
    with pytest.raises(ValidationError, match="outside"):
        restore_home(archive, home)
    assert not home.exists()
    assert not (tmp_path / "sub" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_restore_refuses_files_that_are_not_exports(tmp_path):
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("ftapp.db", "not really")
    with pytest.raises(ValidationError, match="MANIFEST.json"):
        restore_home(plain, tmp_path / "home")
    text = tmp_path / "notes.zip"
    text.write_text("not a zip at all")
    with pytest.raises(ValidationError, match="not a zip"):
        restore_home(text, tmp_path / "home")
    assert not (tmp_path / "home").exists()
