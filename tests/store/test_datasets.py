"""Store writes that run inside the caller's transaction: they open none of their own, so a
failure later in the caller's unit of work takes them back too."""

import pytest

from ftapp.data.importer import import_file
from ftapp.store import datasets as store
from ftapp.store.db import write_transaction
from tests.helpers import pc, table_counts, write_jsonl


@pytest.fixture
def dataset(tmp_path, db, count_tokens):
    rows = [pc(f"Question {i}?", f"Answer {i}.") for i in range(4)]
    import_file(db, write_jsonl(tmp_path / "d.jsonl", rows), "d", count_tokens=count_tokens,
                max_tokens=2048)  # fmt: skip
    return store.get_dataset(db, "d")


def test_status_and_split_writes_roll_back_with_the_caller(db, dataset):
    ids = store.matching_example_ids(db, dataset.id)
    before = table_counts(db)
    with pytest.raises(RuntimeError), write_transaction(db):
        store.set_statuses(db, [(ids[0], "pending")], "accepted", "alice", "2024-01-01T00:00:00Z")
        store.set_splits(db, dataset.id, {ids[1]: "test"})
        assert store.example_statuses(db, ids[:1]) == {ids[0]: "accepted"}
        raise RuntimeError("later step of the same unit of work fails")
    assert table_counts(db) == before
    assert store.example_statuses(db, ids) == dict.fromkeys(ids, "pending")
    assert store.examples_per_split(db, dataset.id) == {"none": 4}


def test_status_change_is_recorded(db, dataset):
    ids = store.matching_example_ids(db, dataset.id)
    with write_transaction(db):
        store.set_statuses(db, [(ids[0], "pending")], "rejected", "bob", "2024-01-01T00:00:00Z")
    assert store.examples_per_status(db, dataset.id) == {"pending": 3, "rejected": 1}
    assert store.example_events(db, ids[0])[-1] == {
        "action": "rejected",
        "detail_json": '{"from": "pending"}',
        "user_name": "bob",
        "created_at": "2024-01-01T00:00:00Z",
    }
    assert store.get_example(db, ids[0]).reviewed_by == "bob"


def test_inserted_examples_keep_their_order_and_roll_back_with_the_caller(db, dataset):
    rows = [
        {"dataset_id": dataset.id, "source_format": "messages", "messages_json": f"[{i}]",
         "raw_json": "{}", "content_hash": f"hash-{i}", "n_tokens": i,
         "created_at": "2024-01-01T00:00:00Z"}
        for i in range(3)
    ]  # fmt: skip
    before = table_counts(db)
    with pytest.raises(RuntimeError), write_transaction(db):
        store.insert_examples(db, rows)
        raise RuntimeError("later step of the same unit of work fails")
    assert table_counts(db) == before
    with write_transaction(db):
        store.insert_examples(db, rows)
        store.insert_examples(db, [])
    stored = db.execute(
        "SELECT messages_json, content_hash, n_tokens, status FROM examples "
        "WHERE content_hash LIKE 'hash-%' ORDER BY id"
    ).fetchall()
    assert stored == [(f"[{i}]", f"hash-{i}", i, "pending") for i in range(3)]
