"""Preference data through the whole data path: each format imported from a file into a
dataset of kind "preference" with both answers (or the label) kept, bad rows with their line,
nothing written on abort or into a dataset of the other kind, frozen versions that carry the
rejected answers, and exports in TRL's preference and unpaired formats."""

from __future__ import annotations

import json

import pytest

from ftapp.data.export import export_dataset
from ftapp.data.importer import ImportRejected, import_file
from ftapp.data.review import set_status_where
from ftapp.data.splits import assign_splits
from ftapp.data.versions import freeze_version
from ftapp.errors import ValidationError
from ftapp.records import DatasetKind
from ftapp.store import datasets as store
from ftapp.store import versions as version_store
from ftapp.training.methods import training_rows
from tests.helpers import table_counts, write_jsonl

USER = {"role": "user", "content": "Capital of France?"}
GOOD = {"role": "assistant", "content": "Paris."}
BAD = {"role": "assistant", "content": "Lyon, I think, but I am not sure at all."}


def load(db, path, dataset, count_tokens, **options):
    return import_file(db, path, dataset, count_tokens=count_tokens, max_tokens=512, **options)


def examples(db, dataset):
    found, _ = store.query_examples(db, store.get_dataset(db, dataset).id, limit=100)
    return found


@pytest.mark.parametrize(
    ("row", "fmt"),
    [
        ({"prompt": "Capital of France?", "chosen": "Paris.", "rejected": BAD["content"]},
         "preference"),
        ({"chosen": [USER, GOOD], "rejected": [USER, BAD]}, "implicit_preference"),
        ({"chosen": f"\n\nHuman: {USER['content']}\n\nAssistant: Paris.",
          "rejected": f"\n\nHuman: {USER['content']}\n\nAssistant: {BAD['content']}"},
         "implicit_preference"),
        ({"input": {"messages": [USER]}, "preferred_output": [GOOD],
          "non_preferred_output": [BAD]}, "openai_preference"),
    ],
)  # fmt: skip
def test_each_pair_format_keeps_both_answers(db, tmp_path, count_tokens, row, fmt):
    report = load(db, write_jsonl(tmp_path / "pairs.jsonl", [row]), "prefs", count_tokens)
    assert (report.source_format, report.n_imported) == (fmt, 1)
    assert store.get_dataset(db, "prefs").kind == DatasetKind.PREFERENCE
    (example,) = examples(db, "prefs")
    assert (example.messages, example.rejected, example.label) == ([USER, GOOD], [BAD], None)
    # A pair counts as its longer side: the rejected answer here.
    assert example.n_tokens == count_tokens([[USER, BAD]])[0] > count_tokens([[USER, GOOD]])[0]


def test_kto_rows_keep_their_label_from_jsonl_and_csv(db, tmp_path, count_tokens):
    rows = [{"prompt": "Capital of France?", "completion": "Paris.", "label": True},
            {"prompt": "Capital of France?", "completion": "Lyon.", "label": False}]  # fmt: skip
    load(db, write_jsonl(tmp_path / "kto.jsonl", rows), "kto", count_tokens)
    assert [(e.messages[-1]["content"], e.label, e.rejected) for e in examples(db, "kto")] == [
        ("Paris.", True, None),
        ("Lyon.", False, None),
    ]
    csv = tmp_path / "kto.csv"
    csv.write_text("prompt,completion,label\nCapital of Spain?,Madrid.,true\n", encoding="utf-8")
    assert load(db, csv, "kto", count_tokens).n_imported == 1
    assert examples(db, "kto")[-1].label is True


def test_bad_pairs_are_listed_by_line_and_abort_writes_nothing(db, tmp_path, count_tokens):
    rows = [
        {"prompt": "q?", "chosen": "Same.", "rejected": "Same."},
        {"prompt": "q?", "chosen": "a", "rejected": [GOOD, {"role": "user", "content": "?"}, BAD]},
        {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
    ]
    path = write_jsonl(tmp_path / "mixed.jsonl", rows)
    before = table_counts(db)
    with pytest.raises(ImportRejected) as refused:
        load(db, path, "prefs", count_tokens, on_error="abort")
    assert [(p.line, p.reason) for p in refused.value.report.problems] == [
        (1, "the chosen and rejected answers are the same: nothing to prefer"),
        (
            2,
            "the rejected answer holds a user or system turn: an answer is the assistant's "
            "turns (and its tools'), the prompt comes before it",
        ),
    ]
    assert table_counts(db) == before
    report = load(db, path, "prefs", count_tokens)  # skip: the good row goes in
    assert report.n_imported == 1 and [p.line for p in report.problems] == [1, 2]


def test_a_dataset_holds_one_kind(db, tmp_path, count_tokens):
    pair = {"prompt": "q?", "chosen": "a", "rejected": "b"}
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [pair])
    sft = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "q?", "completion": "a"}])
    load(db, sft, "chat", count_tokens)
    load(db, pairs, "prefs", count_tokens)
    before = table_counts(db)
    with pytest.raises(ValidationError, match="'chat' holds conversations .SFT.; this file holds "
                                              "preference data"):  # fmt: skip
        load(db, pairs, "chat", count_tokens)
    with pytest.raises(ValidationError, match="'prefs' holds preference data"):
        load(db, sft, "prefs", count_tokens)
    assert table_counts(db) == before


def test_a_pair_is_a_duplicate_only_with_the_same_rejected_answer(db, tmp_path, count_tokens):
    row = {"prompt": "q?", "chosen": "a", "rejected": "b"}
    other = {**row, "rejected": "c"}
    report = load(db, write_jsonl(tmp_path / "p.jsonl", [row, row, other]), "prefs", count_tokens)
    assert report.n_imported == 2 and [d.line for d in report.duplicates] == [2]


def test_versions_and_exports_carry_both_answers(db, tmp_path, count_tokens):
    rows = [{"prompt": f"Say {i}", "chosen": f"{i}.", "rejected": f"No {i}."} for i in range(6)]
    rows.append({"prompt": "Say bad", "completion": "Bad.", "label": False})
    load(db, write_jsonl(tmp_path / "pairs.jsonl", rows[:6]), "prefs", count_tokens)
    load(db, write_jsonl(tmp_path / "kto.jsonl", rows[6:]), "prefs", count_tokens)
    set_status_where(db, "prefs", "accepted", "t")
    assign_splits(db, "prefs", (1.0, 0.0, 0.0))
    version, _ = freeze_version(db, "prefs", "t")
    frozen = list(version_store.version_rows(db, version.id))
    assert [r["rejected"] for r in frozen[:2]] == [
        [{"role": "assistant", "content": "No 0."}],
        [{"role": "assistant", "content": "No 1."}],
    ]
    assert frozen[-1]["label"] is False and frozen[-1]["rejected"] is None
    # DPO and ORPO learn from the pairs only; KTO from every answer, a pair's two included.
    pairs = training_rows("dpo", frozen, "train")
    assert [p["chosen"][0]["content"] for p in pairs] == [f"{i}." for i in range(6)]
    assert training_rows("orpo", frozen, "train") == pairs
    unpaired = training_rows("kto", frozen, "train")
    assert [(u["completion"][0]["content"], u["label"]) for u in unpaired[-3:]] == [
        ("5.", True),
        ("No 5.", False),
        ("Bad.", False),
    ]

    out = tmp_path / "pairs-out.jsonl"
    assert export_dataset(db, "prefs", out, fmt="preference", version=version.version) == 6
    first = json.loads(out.read_text().splitlines()[0])
    assert first == {"prompt": [{"role": "user", "content": "Say 0"}],
                     "chosen": [{"role": "assistant", "content": "0."}],
                     "rejected": [{"role": "assistant", "content": "No 0."}]}  # fmt: skip
    assert export_dataset(db, "prefs", tmp_path / "kto-out.jsonl", fmt="kto") == 13
    labels = [json.loads(line)["label"] for line in (tmp_path / "kto-out.jsonl").open()]
    assert labels == [True, False] * 6 + [False]
    # The exported pairs import back as the same pairs (a duplicate of each).
    with pytest.raises(ImportRejected, match="every row is a duplicate"):
        load(db, out, "prefs", count_tokens)


def test_sft_datasets_refuse_the_preference_exports(db, tmp_path, count_tokens):
    load(db, write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "q?", "completion": "a"}]), "chat",
         count_tokens)  # fmt: skip
    set_status_where(db, "chat", "accepted", "t")
    with pytest.raises(ValidationError, match="the preference format exports a preference"):
        export_dataset(db, "chat", tmp_path / "x.jsonl", fmt="preference")
    assert not (tmp_path / "x.jsonl").exists()


def test_editing_a_pair_keeps_its_rejected_answer(db, tmp_path, count_tokens):
    from ftapp.data.review import edit_example

    row = {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": BAD["content"]}
    load(db, write_jsonl(tmp_path / "p.jsonl", [row]), "prefs", count_tokens)
    (example,) = examples(db, "prefs")
    edited = edit_example(db, example.id, [USER, {"role": "assistant", "content": "Paris!"}],
                          "t", count_tokens)  # fmt: skip
    assert edited.rejected == [BAD] and edited.messages[-1]["content"] == "Paris!"
    assert edited.n_tokens == count_tokens([[USER, BAD]])[0]  # still the longer side
    # The same pair imported again is a duplicate of nothing now: its chosen answer changed.
    assert load(db, write_jsonl(tmp_path / "again.jsonl", [row]), "prefs", count_tokens).n_imported
