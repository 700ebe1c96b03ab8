"""Labeling: status changes, edits, tags, notes, revert; who did what is recorded."""

import json

import pytest

from ftapp.data import review
from ftapp.data.importer import import_file
from ftapp.errors import NotFound, ValidationError
from ftapp.store import datasets as store
from tests.helpers import pc, table_counts, write_jsonl


@pytest.fixture
def dataset(tmp_path, db, count_tokens):
    rows = [pc(f"Question {i}?", f"Answer {i}.") for i in range(6)]
    import_file(db, write_jsonl(tmp_path / "d.jsonl", rows), "d", count_tokens=count_tokens,
                max_tokens=2048)  # fmt: skip
    return store.get_dataset(db, "d")


def ids(db, dataset):
    return store.matching_example_ids(db, dataset.id)


def test_accept_reject_records_reviewer_and_events(db, dataset):
    first, second = ids(db, dataset)[:2]
    assert review.set_status(db, [first], "accepted", "alice") == 1
    assert review.set_status(db, [second], "rejected", "bob") == 1
    accepted = store.get_example(db, first)
    assert (accepted.status, accepted.reviewed_by) == ("accepted", "alice")
    events = store.example_events(db, second)
    assert [(e["action"], e["user_name"]) for e in events] == [("rejected", "bob")]
    assert json.loads(events[0]["detail_json"]) == {"from": "pending"}
    # Setting the same status again changes nothing and records nothing.
    assert review.set_status(db, [first], "accepted", "alice") == 0
    assert len(store.example_events(db, first)) == 1


def test_bad_status_or_unknown_id_changes_nothing(db, dataset):
    before = table_counts(db)
    with pytest.raises(ValidationError, match="status must be one of"):
        review.set_status(db, ids(db, dataset), "approved", "alice")
    with pytest.raises(NotFound, match="#99999"):
        review.set_status(db, [ids(db, dataset)[0], 99999], "accepted", "alice")
    assert table_counts(db) == before
    assert store.get_example(db, ids(db, dataset)[0]).status == "pending"


def test_bulk_status_with_filters(db, dataset):
    example_ids = ids(db, dataset)
    review.set_tags(db, example_ids[0], ["hard"], "alice")
    review.set_tags(db, example_ids[1], ["hard", "math"], "alice")
    assert review.set_status_where(db, "d", "rejected", "alice", tag="hard") == 2
    assert review.set_status_where(db, "d", "accepted", "alice", status="pending") == 4
    counts = {e.status.value for e in store.query_examples(db, dataset.id, limit=50)[0]}
    assert counts == {"accepted", "rejected"}
    assert review.set_status_where(db, "d", "accepted", "alice", search="question 0") == 1


def test_edit_keeps_original_and_counts_tokens(db, dataset, count_tokens):
    example_id = ids(db, dataset)[0]
    edited = review.edit_turns(db, example_id, system="Be brief.", prompt="Question 0, edited?",
                               answer="A much longer answer " * 20, user="carol",
                               count_tokens=count_tokens)  # fmt: skip
    assert edited.messages[0] == {"role": "system", "content": "Be brief."}
    assert edited.messages[1]["content"] == "Question 0, edited?"
    assert edited.original_messages == [
        {"role": "user", "content": "Question 0?"},
        {"role": "assistant", "content": "Answer 0."},
    ]
    assert edited.is_edited and edited.updated_by == "carol"
    assert edited.n_tokens == count_tokens([edited.messages])[0]
    event = store.example_events(db, example_id)[-1]
    assert event["action"] == "edit" and event["user_name"] == "carol"
    assert json.loads(event["detail_json"])["before"] == edited.original_messages

    reverted = review.revert_example(db, example_id, "carol", count_tokens)
    assert reverted.messages == reverted.original_messages
    assert not reverted.is_edited


def test_invalid_edit_is_refused_and_changes_nothing(db, dataset, count_tokens):
    example_id = ids(db, dataset)[0]
    before = store.get_example(db, example_id)
    with pytest.raises(ValidationError, match="empty content"):
        review.edit_turns(db, example_id, system="", prompt="Q", answer="   ", user="x",
                          count_tokens=count_tokens)  # fmt: skip
    with pytest.raises(ValidationError, match="out of order"):
        review.edit_example(db, example_id, [{"role": "assistant", "content": "hi"}], "x",
                            count_tokens)  # fmt: skip
    with pytest.raises(ValidationError, match="role and content"):
        review.edit_example(db, example_id, [{"role": "user", "content": "q", "x": 1}], "x",
                            count_tokens)  # fmt: skip
    assert store.get_example(db, example_id) == before


def test_tags_and_notes(db, dataset):
    example_id = ids(db, dataset)[0]
    tagged = review.set_tags(db, example_id, review.parse_tags(" math, hard ,math,"), "dan")
    assert tagged.tags == ["hard", "math"]
    assert store.query_examples(db, dataset.id, tag="math")[1] == 1
    noted = review.set_note(db, example_id, "Check the arithmetic", "dan")
    assert noted.note == "Check the arithmetic"
    assert store.query_examples(db, dataset.id, search="ARITHMETIC")[1] == 1
    with pytest.raises(ValidationError, match="50 characters"):
        review.set_tags(db, example_id, ["x" * 51], "dan")
    with pytest.raises(ValidationError, match="at most 20 tags"):
        review.set_tags(db, example_id, [f"t{i}" for i in range(21)], "dan")
    assert store.get_example(db, example_id).tags == ["hard", "math"]
    actions = [e["action"] for e in store.example_events(db, example_id)]
    assert actions == ["tags", "note"]


def test_search_is_a_parameter_not_sql(db, dataset):
    for text in ["' OR 1=1 --", "%", "_", '"; DROP TABLE examples; --']:
        assert store.query_examples(db, dataset.id, search=text)[1] == 0
    assert db["examples"].count == 6


def test_save_is_all_or_nothing(db, dataset, count_tokens):
    example_id = ids(db, dataset)[0]
    before = store.get_example(db, example_id)
    with pytest.raises(ValidationError, match="no commas|50 characters"):
        review.save_example(db, example_id, system="", prompt="Q?", answer="A new answer.",
                            tags=["x" * 60], note="n", user="u",
                            count_tokens=count_tokens)  # fmt: skip
    assert store.get_example(db, example_id) == before
    saved = review.save_example(db, example_id, system="", prompt="Q?", answer="A new answer.",
                                tags=["ok"], note="n", user="u",
                                count_tokens=count_tokens)  # fmt: skip
    assert (saved.messages[-1]["content"], saved.tags, saved.note) == ("A new answer.", ["ok"], "n")
