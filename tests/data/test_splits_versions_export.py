"""Splits are deterministic; frozen versions are immutable snapshots; exports round-trip."""

import json
import sqlite3

import pytest

from ftapp.data import review
from ftapp.data.export import export_dataset
from ftapp.data.importer import import_file
from ftapp.data.splits import assign_splits, parse_ratios
from ftapp.data.versions import freeze_version, resolve_version
from ftapp.errors import NotFound, ValidationError
from ftapp.store import datasets as store
from ftapp.store import versions as version_store
from tests.helpers import pc, table_counts, write_jsonl


def make_dataset(tmp_path, db, count_tokens, name="d", n=50):
    rows = [pc(f"Question {i}?", f"Answer {i}.") for i in range(n)]
    path = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    import_file(db, path, name, count_tokens=count_tokens, max_tokens=2048)
    return store.get_dataset(db, name)


def splits_of(db, dataset):
    return {e.id: e.split for e in store.query_examples(db, dataset.id, limit=10_000)[0]}


def test_splits_follow_ratios_and_are_deterministic(tmp_path, db, count_tokens):
    dataset = make_dataset(tmp_path, db, count_tokens, n=50)
    assert assign_splits(db, "d", (0.8, 0.1, 0.1), seed=1) == {
        "train": 40, "validation": 5, "test": 5}  # fmt: skip
    first = splits_of(db, dataset)
    assign_splits(db, "d", (0.8, 0.1, 0.1), seed=2)
    assert splits_of(db, dataset) != first  # another seed, another draw
    assign_splits(db, "d", [80, 10, 10], seed=1)  # percentages are scaled
    assert splits_of(db, dataset) == first
    assert store.get_dataset(db, "d").split_ratios == (0.8, 0.1, 0.1)


def test_rejected_examples_get_no_split(tmp_path, db, count_tokens):
    dataset = make_dataset(tmp_path, db, count_tokens, n=10)
    rejected = store.matching_example_ids(db, dataset.id)[:2]
    review.set_status(db, rejected, "rejected", "a")
    counts = assign_splits(db, "d", (0.5, 0.25, 0.25))
    assert sum(counts.values()) == 8
    assert all(splits_of(db, dataset)[i] is None for i in rejected)


def test_split_is_stable_for_same_content_across_datasets(tmp_path, db, count_tokens):
    a = make_dataset(tmp_path, db, count_tokens, "a", n=30)
    b = make_dataset(tmp_path, db, count_tokens, "b", n=30)
    assign_splits(db, "a", (0.6, 0.2, 0.2), seed=7)
    assign_splits(db, "b", (0.6, 0.2, 0.2), seed=7)
    by_text = lambda ds: {  # noqa: E731
        e.messages[0]["content"]: e.split for e in store.query_examples(db, ds.id, limit=99)[0]
    }
    assert by_text(a) == by_text(b)


@pytest.mark.parametrize(
    "ratios, message",
    [((0.5, 0.5), "three ratios"), ((0, 0.5, 0.5), "train ratio"), ((-1, 1, 1), "non-negative"),
     (("a", 1, 1), "numbers"), ((0, 0, 0), "non-negative")],
)  # fmt: skip
def test_bad_ratios(ratios, message):
    with pytest.raises(ValidationError, match=message):
        parse_ratios(ratios)


def test_freeze_snapshot_is_immutable(tmp_path, db, count_tokens):
    dataset = make_dataset(tmp_path, db, count_tokens, n=20)
    with pytest.raises(ValidationError, match="no example is accepted"):
        freeze_version(db, "d", "alice")
    review.set_status_where(db, "d", "accepted", "alice")
    with pytest.raises(ValidationError, match="20 accepted examples have no split"):
        freeze_version(db, "d", "alice")
    assign_splits(db, "d", (0.5, 0.25, 0.25))
    version, created = freeze_version(db, "d", "alice", note="first")
    assert created and version.version == 1 and version.n_examples == 20
    assert (version.n_train, version.n_validation, version.n_test) == (10, 5, 5)
    assert resolve_version(db, "d@v1") == version

    # Freezing again without changes returns the same version.
    again, created = freeze_version(db, "d", "bob")
    assert not created and again.id == version.id

    # Edits after freezing don't change the frozen rows.
    rows_before = list(version_store.version_rows(db, version.id))
    example_id = store.matching_example_ids(db, dataset.id)[0]
    review.edit_turns(db, example_id, system="", prompt="Changed?", answer="Changed.",
                      user="bob", count_tokens=count_tokens)  # fmt: skip
    assert list(version_store.version_rows(db, version.id)) == rows_before
    second, created = freeze_version(db, "d", "bob")
    assert created and second.version == 2 and second.content_hash != version.content_hash

    # The database itself refuses to change a frozen version.
    with pytest.raises(sqlite3.IntegrityError, match="frozen"):
        db.execute("UPDATE version_examples SET messages_json = '[]' WHERE version_id = ?",
                   [version.id])  # fmt: skip
    with pytest.raises(sqlite3.IntegrityError, match="frozen"):
        db.execute("UPDATE dataset_versions SET n_examples = 0 WHERE id = ?", [version.id])


def test_content_hash_depends_only_on_content(tmp_path, db, count_tokens):
    for name in ("x", "y"):
        make_dataset(tmp_path, db, count_tokens, name, n=12)
        review.set_status_where(db, name, "accepted", "a")
        assign_splits(db, name, (0.5, 0.25, 0.25), seed=3)
    vx, _ = freeze_version(db, "x", "a")
    vy, _ = freeze_version(db, "y", "b")
    assert vx.content_hash == vy.content_hash


def test_unknown_version_references(tmp_path, db, count_tokens):
    make_dataset(tmp_path, db, count_tokens, n=3)
    with pytest.raises(NotFound, match="v9"):
        resolve_version(db, "d@v9")
    with pytest.raises(ValidationError, match="NAME@v3"):
        resolve_version(db, "d")
    with pytest.raises(NotFound, match="no dataset"):
        resolve_version(db, "nope@v1")


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_export_formats_and_round_trip(tmp_path, db, count_tokens):
    make_dataset(tmp_path, db, count_tokens, n=10)
    review.set_status_where(db, "d", "accepted", "a")
    assign_splits(db, "d", (0.6, 0.2, 0.2))
    freeze_version(db, "d", "a")

    out = tmp_path / "out" / "all.jsonl"
    assert export_dataset(db, "d", out) == 10
    rows = read_jsonl(out)
    assert rows[0] == {"messages": [{"role": "user", "content": "Question 0?"},
                                    {"role": "assistant", "content": "Answer 0."}]}  # fmt: skip

    pc_out = tmp_path / "pc.jsonl"
    assert export_dataset(db, "d", pc_out, fmt="prompt_completion", version="v1",
                          split="train") == 6  # fmt: skip
    assert all(set(row) == {"prompt", "completion"} for row in read_jsonl(pc_out))
    assert all(isinstance(row["prompt"], str) for row in read_jsonl(pc_out))

    # What was exported imports back as the same conversations.
    import_file(db, out, "again", count_tokens=count_tokens, max_tokens=2048)
    original = {tuple(map(str, e.messages)) for e in store.query_examples(
        db, store.get_dataset(db, "d").id, limit=99)[0]}  # fmt: skip
    again = {tuple(map(str, e.messages)) for e in store.query_examples(
        db, store.get_dataset(db, "again").id, limit=99)[0]}  # fmt: skip
    assert original == again


def test_prompt_completion_export_of_multi_turn_uses_conversational_form(
    tmp_path, db, count_tokens
):
    single = {"messages": [{"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": "Hello"}]}  # fmt: skip
    multi = {"messages": [
        {"role": "system", "content": "Be kind."}, {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"}]}  # fmt: skip
    write_jsonl(tmp_path / "m.jsonl", [single, multi])
    import_file(db, tmp_path / "m.jsonl", "m", count_tokens=count_tokens, max_tokens=2048)
    review.set_status_where(db, "m", "accepted", "a")
    out = tmp_path / "m-out.jsonl"
    export_dataset(db, "m", out, fmt="prompt_completion")
    exported = read_jsonl(out)
    assert exported[0] == {"prompt": [{"role": "user", "content": "Hi"}],
                           "completion": [{"role": "assistant", "content": "Hello"}]}  # fmt: skip
    assert exported[1]["prompt"][0] == {"role": "system", "content": "Be kind."}
    assert exported[1]["completion"] == [{"role": "assistant", "content": "d"}]


def test_export_errors_write_nothing(tmp_path, db, count_tokens):
    make_dataset(tmp_path, db, count_tokens, n=3)
    before = table_counts(db)
    with pytest.raises(ValidationError, match="JSONL"):
        export_dataset(db, "d", tmp_path / "x.csv")
    with pytest.raises(ValidationError, match="export format"):
        export_dataset(db, "d", tmp_path / "x.jsonl", fmt="alpaca")
    with pytest.raises(NotFound):
        export_dataset(db, "d", tmp_path / "x.jsonl", version="v4")
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "x.csv").exists()
    assert table_counts(db) == before


def test_export_of_nothing_says_so(tmp_path, db, count_tokens):
    make_dataset(tmp_path, db, count_tokens, n=3)
    with pytest.raises(ValidationError, match="nothing to export, no accepted examples"):
        export_dataset(db, "d", tmp_path / "none.jsonl")
    assert not (tmp_path / "none.jsonl").exists()
