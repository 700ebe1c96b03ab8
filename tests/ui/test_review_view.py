"""The review page's view of a preference example: the prompt in the chat, the answers side by
side below it (chosen and rejected, or the one answer under its good/bad label), escaped, and
the header saying which is which; the Swap button and its keyboard shortcut on the page."""

from __future__ import annotations

from ftapp.data.importer import import_file
from ftapp.store import datasets as store
from ftapp.ui.data_review_view import answers_html, chat_of, header_of
from tests.helpers import pc, write_jsonl


def test_a_pair_shows_both_answers_and_an_unpaired_row_its_label(db, tmp_path, count_tokens):
    rows = [{"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "<b>Lyon</b>."}]
    import_file(db, write_jsonl(tmp_path / "p.jsonl", rows), "prefs", count_tokens=count_tokens,
                max_tokens=512)  # fmt: skip
    kto = [{"prompt": "Capital of Spain?", "completion": "Madrid.", "label": False}]
    import_file(db, write_jsonl(tmp_path / "k.jsonl", kto), "kto", count_tokens=count_tokens,
                max_tokens=512)  # fmt: skip
    import_file(db, write_jsonl(tmp_path / "c.jsonl", [pc("Hi?", "Hello.")]), "chat",
                count_tokens=count_tokens, max_tokens=512)  # fmt: skip
    (pair,), _ = store.query_examples(db, store.get_dataset(db, "prefs").id)
    assert chat_of(pair) == [{"role": "user", "content": "Capital of France?"}]
    shown = answers_html(pair)
    assert shown.index("Chosen") < shown.index("Paris.") < shown.index("Rejected")
    assert shown.index("Rejected") < shown.index("&lt;b&gt;Lyon&lt;/b&gt;.")
    assert "<b>Lyon" not in shown
    assert "a pair: the chosen and the rejected answer side by side" in header_of(pair)

    (unpaired,), _ = store.query_examples(db, store.get_dataset(db, "kto").id)
    assert chat_of(unpaired) == [{"role": "user", "content": "Capital of Spain?"}]
    shown = answers_html(unpaired)
    assert ">Bad</div>" in shown and "Madrid." in shown and "Chosen" not in shown
    assert "an answer labelled bad" in header_of(unpaired)

    (conversation,), _ = store.query_examples(db, store.get_dataset(db, "chat").id)
    assert len(chat_of(conversation)) == 2 and answers_html(conversation) == ""


def test_the_swap_button_has_the_s_shortcut(services):
    from ftapp.ui.app import SHORTCUTS_JS, build_app

    app = build_app(services)
    swap = next(block for block in app.blocks.values()
                if getattr(block, "elem_id", None) == "ft-swap")  # fmt: skip
    assert swap.value == "Swap chosen and rejected (s)"
    assert "s: ['ft-swap']" in SHORTCUTS_JS
    wired = [f for f in app.fns.values() if f.api_name == "review_swap"]
    assert len(wired) == 1 and wired[0].fn.ftapp_role == "admin"
