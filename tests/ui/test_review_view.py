"""The review page's view of a preference example: the chosen answer in the chat, the rejected
one set apart below it, and the header saying which is which."""

from __future__ import annotations

from ftapp.data.importer import import_file
from ftapp.store import datasets as store
from ftapp.ui.data_review_view import chat_of, header_of
from tests.helpers import write_jsonl


def test_a_pair_shows_both_answers_and_an_unpaired_row_its_label(db, tmp_path, count_tokens):
    rows = [{"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "<b>Lyon</b>."}]
    import_file(db, write_jsonl(tmp_path / "p.jsonl", rows), "prefs", count_tokens=count_tokens,
                max_tokens=512)  # fmt: skip
    kto = [{"prompt": "Capital of Spain?", "completion": "Madrid.", "label": False}]
    import_file(db, write_jsonl(tmp_path / "k.jsonl", kto), "kto", count_tokens=count_tokens,
                max_tokens=512)  # fmt: skip
    (pair,), _ = store.query_examples(db, store.get_dataset(db, "prefs").id)
    assert chat_of(pair) == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "assistant", "content": "&lt;b&gt;Lyon&lt;/b&gt;.",
         "metadata": {"title": "Rejected answer"}},
    ]  # fmt: skip
    assert "a pair: the chosen answer, then the rejected one" in header_of(pair)
    (unpaired,), _ = store.query_examples(db, store.get_dataset(db, "kto").id)
    assert len(chat_of(unpaired)) == 2 and "an answer labelled bad" in header_of(unpaired)
