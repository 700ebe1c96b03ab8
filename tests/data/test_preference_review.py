"""Reviewing preference data: swapping a pair's chosen and rejected answers, editing the
rejected answer, labelling an unpaired row good or bad; each recorded as an event, each undone
by a revert to the text as imported; refused, with the reason, where it doesn't fit; and the
statistics of a preference dataset (its pairs, both answers' token lengths)."""

from __future__ import annotations

import json

import pytest

from ftapp.data import review
from ftapp.data.formats import content_hash
from ftapp.data.importer import ImportRejected, import_file
from ftapp.data.stats import dataset_stats, preference_line, token_histogram, token_lengths
from ftapp.errors import ValidationError
from ftapp.store import datasets as store
from tests.helpers import pc, table_counts, write_jsonl

USER = {"role": "user", "content": "Capital of France?"}
GOOD = {"role": "assistant", "content": "Paris."}
BAD = {"role": "assistant", "content": "Lyon, I think, but I am not sure at all."}
PAIRS = [
    {"prompt": USER["content"], "chosen": GOOD["content"], "rejected": BAD["content"]},
    {"prompt": "Two plus two?", "chosen": "Four.", "rejected": "Five."},
]


def load(db, path, dataset, count_tokens):
    return import_file(db, path, dataset, count_tokens=count_tokens, max_tokens=512)


def examples(db, dataset):
    found, _ = store.query_examples(db, store.get_dataset(db, dataset).id, limit=100)
    return found


@pytest.fixture
def pair(db, tmp_path, count_tokens):
    """The first pair of a dataset "prefs" of two, as imported."""
    load(db, write_jsonl(tmp_path / "pairs.jsonl", PAIRS), "prefs", count_tokens)
    return examples(db, "prefs")[0]


@pytest.fixture
def unpaired(db, tmp_path, count_tokens):
    """An unpaired (KTO) row labelled bad, in a dataset "kto", as imported."""
    row = {"prompt": "Capital of Spain?", "completion": "Barcelona.", "label": False}
    load(db, write_jsonl(tmp_path / "kto.jsonl", [row]), "kto", count_tokens)
    return examples(db, "kto")[0]


@pytest.fixture
def conversation(db, tmp_path, count_tokens):
    """An SFT example, in a dataset "chat", as imported."""
    load(db, write_jsonl(tmp_path / "chat.jsonl", [pc("Hi?", "Hello.")]), "chat", count_tokens)
    return examples(db, "chat")[0]


def stored_hash(db, example_id):
    return db["examples"].get(example_id)["content_hash"]


def actions(db, example_id):
    return [(e["action"], e["user_name"]) for e in store.example_events(db, example_id)]


def test_swap_twice_gives_the_pair_back_and_each_swap_is_an_event(db, pair):
    assert (pair.messages, pair.rejected) == ([USER, GOOD], [BAD])
    imported = stored_hash(db, pair.id)
    swapped = review.swap_answers(db, pair.id, "alice")
    assert (swapped.messages, swapped.rejected) == ([USER, BAD], [GOOD])
    assert stored_hash(db, pair.id) == content_hash([USER, BAD], None, [GOOD], None)
    assert imported == content_hash([USER, GOOD], None, [BAD], None)
    assert swapped.n_tokens == pair.n_tokens  # the same two sides, the longer one counted
    assert swapped.original_messages == [USER, GOOD] and swapped.is_edited
    assert swapped.updated_by == "alice"
    (event,) = store.example_events(db, pair.id)
    assert (event["action"], event["user_name"]) == ("swap", "alice") and event["created_at"]
    assert json.loads(event["detail_json"]) == {
        "before": [USER, GOOD], "after": [USER, BAD], "rejected_before": [BAD],
        "rejected_after": [GOOD],
    }  # fmt: skip

    back = review.swap_answers(db, pair.id, "bob")
    assert (back.messages, back.rejected) == (pair.messages, pair.rejected)
    assert (stored_hash(db, pair.id), back.n_tokens) == (imported, pair.n_tokens)
    assert not back.is_edited
    assert actions(db, pair.id) == [("swap", "alice"), ("swap", "bob")]


def test_a_swapped_pair_is_a_duplicate_of_the_swapped_row(db, pair, tmp_path, count_tokens):
    review.swap_answers(db, pair.id, "alice")
    swapped_row = {"prompt": USER["content"], "chosen": BAD["content"], "rejected": "Paris."}
    with pytest.raises(ImportRejected, match="every row is a duplicate"):
        load(db, write_jsonl(tmp_path / "swapped.jsonl", [swapped_row]), "prefs", count_tokens)
    # The pair as first imported is new again.
    assert load(db, write_jsonl(tmp_path / "again.jsonl", PAIRS[:1]), "prefs",
                count_tokens).n_imported == 1  # fmt: skip


def test_the_rejected_answer_is_edited_with_the_same_checks(db, pair, count_tokens):
    longer = "Marseille, or maybe Lyon; " * 12
    edited = review.save_example(db, pair.id, system="", prompt=USER["content"],
                                 answer=GOOD["content"], tags=[], note="", user="carol",
                                 count_tokens=count_tokens, rejected=longer)  # fmt: skip
    assert edited.rejected == [{"role": "assistant", "content": longer}]
    assert edited.messages == [USER, GOOD] and not edited.is_edited  # the chosen side as it was
    assert edited.n_tokens == count_tokens([[USER, edited.rejected[0]]])[0] > pair.n_tokens
    assert stored_hash(db, pair.id) == content_hash([USER, GOOD], None, edited.rejected, None)
    (event,) = store.example_events(db, pair.id)
    detail = json.loads(event["detail_json"])
    assert (event["action"], event["user_name"]) == ("edit", "carol")
    assert (detail["rejected_before"], detail["rejected_after"]) == ([BAD], edited.rejected)

    before, counts = store.get_example(db, pair.id), table_counts(db)
    refusals = [
        ("Paris.  ", "the chosen and rejected answers are the same: nothing to prefer"),
        ("   ", "rejected side: message 2 .assistant.: empty content"),
    ]
    for text, reason in refusals:
        with pytest.raises(ValidationError, match=reason):
            review.edit_turns(db, pair.id, system="", prompt=USER["content"],
                              answer=GOOD["content"], user="carol", count_tokens=count_tokens,
                              rejected=text)  # fmt: skip
    with pytest.raises(ValidationError, match="rejected answer: a user or system turn"):
        review.edit_example(db, pair.id, [USER, GOOD], "carol", count_tokens,
                            rejected=[{"role": "user", "content": "Why?"}, BAD])  # fmt: skip
    with pytest.raises(ValidationError, match="rejected answer, message 1: use exactly"):
        review.edit_example(db, pair.id, [USER, GOOD], "carol", count_tokens,
                            rejected=[{**BAD, "name": "x"}])  # fmt: skip
    # Editing the chosen answer into the rejected one is the same refusal.
    with pytest.raises(ValidationError, match="the same: nothing to prefer"):
        review.edit_example(db, pair.id, [USER, edited.rejected[0]], "carol", count_tokens)
    assert store.get_example(db, pair.id) == before and table_counts(db) == counts


def test_revert_after_swaps_and_edits_brings_back_the_imported_pair(db, pair, count_tokens):
    imported = stored_hash(db, pair.id)
    review.swap_answers(db, pair.id, "alice")
    review.edit_turns(db, pair.id, system="Be brief.", prompt="Capital of France, please?",
                      answer="Lyon.", rejected="Paris, of course.", user="alice",
                      count_tokens=count_tokens)  # fmt: skip
    review.swap_answers(db, pair.id, "alice")
    changed = store.get_example(db, pair.id)
    assert changed.rejected == [{"role": "assistant", "content": "Lyon."}]

    reverted = review.revert_example(db, pair.id, "bob", count_tokens)
    assert (reverted.messages, reverted.rejected) == ([USER, GOOD], [BAD])
    assert (stored_hash(db, pair.id), reverted.n_tokens) == (imported, pair.n_tokens)
    assert not reverted.is_edited
    assert actions(db, pair.id)[-1] == ("edit", "bob")
    # A revert of an example as imported changes nothing and records nothing.
    assert review.revert_example(db, pair.id, "bob", count_tokens) == reverted
    assert len(actions(db, pair.id)) == 4


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("conversation", "example #\\d+ has no rejected answer to swap with: it is a "
                         "conversation to imitate .SFT."),
        ("unpaired", "example #\\d+ has no rejected answer to swap with: it is an unpaired "
                     ".KTO. row, one answer labelled bad; set its label instead"),
    ],
)  # fmt: skip
def test_swap_is_refused_without_a_rejected_answer(db, request, which, reason, count_tokens):
    example = request.getfixturevalue(which)
    before = table_counts(db)
    with pytest.raises(ValidationError, match=reason):
        review.swap_answers(db, example.id, "alice")
    with pytest.raises(ValidationError, match="has no rejected answer to edit"):
        review.edit_turns(db, example.id, system="", prompt=example.messages[0]["content"],
                          answer=example.messages[-1]["content"], rejected="Another answer.",
                          user="alice", count_tokens=count_tokens)  # fmt: skip
    assert store.get_example(db, example.id) == example and table_counts(db) == before
    # The review form sends an empty rejected box for these: the rest saves as usual.
    saved = review.save_example(db, example.id, system="", prompt=example.messages[0]["content"],
                                answer="Edited.", tags=[], note="", user="alice",
                                count_tokens=count_tokens, rejected="")  # fmt: skip
    assert saved.messages[-1]["content"] == "Edited." and saved.rejected is None


def test_an_unpaired_rows_label_is_set_recorded_and_reverted(db, unpaired, pair, count_tokens):
    imported = stored_hash(db, unpaired.id)
    good = review.set_label(db, unpaired.id, True, "alice")
    assert good.label is True
    assert stored_hash(db, good.id) == content_hash(good.messages, None, None, True) != imported
    (event,) = store.example_events(db, unpaired.id)
    assert (event["action"], event["user_name"]) == ("label", "alice")
    assert json.loads(event["detail_json"]) == {"label_before": False, "label_after": True}
    assert review.set_label(db, unpaired.id, True, "alice") == good  # no change, no event
    assert len(actions(db, unpaired.id)) == 1

    counts = table_counts(db)
    with pytest.raises(ValidationError, match="has no good/bad label: it is a pair .* swap"):
        review.set_label(db, pair.id, True, "alice")
    with pytest.raises(ValidationError, match="the label must be true .good. or false .bad."):
        review.set_label(db, unpaired.id, "yes", "alice")
    assert table_counts(db) == counts

    reverted = review.revert_example(db, unpaired.id, "bob", count_tokens)
    assert (reverted.label, stored_hash(db, unpaired.id)) == (False, imported)
    assert actions(db, unpaired.id)[-1] == ("label", "bob")


def test_stats_count_the_pairs_and_both_answers_tokens(db, pair, unpaired, conversation,
                                                       count_tokens):  # fmt: skip
    stats = dataset_stats(db, "prefs")
    assert (stats["kind"], stats["preference"]) == ("preference", {"pairs": 2, "good": 0,
                                                                   "bad": 0})  # fmt: skip
    assert preference_line(stats) == "pairs: 2"
    assert preference_line(dataset_stats(db, "kto")) == "pairs: 0 · bad: 1"
    assert preference_line(dataset_stats(db, "chat")) == ""

    # Each pair counts as its longer side: here the rejected answers are the longer ones.
    sides = [[[USER, GOOD], [USER, BAD]],
             [[{"role": "user", "content": "Two plus two?"},
               {"role": "assistant", "content": "Four."}],
              [{"role": "user", "content": "Two plus two?"},
               {"role": "assistant", "content": "Five."}]]]  # fmt: skip
    longer = [max(count_tokens(pair_sides)) for pair_sides in sides]
    assert count_tokens([[USER, BAD]])[0] > count_tokens([[USER, GOOD]])[0]
    assert sorted(token_lengths(db, "prefs")) == sorted(longer)
    assert stats["tokens"]["max"] == max(longer)

    # A much longer rejected answer moves the statistics and the histogram.
    long_text = "Marseille, or maybe Lyon; " * 20
    review.edit_turns(db, pair.id, system="", prompt=USER["content"], answer=GOOD["content"],
                      rejected=long_text, user="carol", count_tokens=count_tokens)  # fmt: skip
    long_count = count_tokens([[USER, {"role": "assistant", "content": long_text}]])[0]
    assert dataset_stats(db, "prefs")["tokens"]["max"] == long_count
    bins = token_histogram(token_lengths(db, "prefs"))
    assert sum(b["examples"] for b in bins) == 2 and bins[-1]["high"] >= long_count
