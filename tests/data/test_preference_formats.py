"""Preference rows in every format teams bring them in, and the bad rows of each with their
reasons: the same shape (prompt, chosen, rejected | label) whatever the source."""

from __future__ import annotations

import pytest

from ftapp.data.formats import RowError, detect_format
from ftapp.data.preference_formats import normalize_preference
from ftapp.records import SourceFormat

USER = {"role": "user", "content": "Capital of France?"}
GOOD = {"role": "assistant", "content": "Paris."}
BAD = {"role": "assistant", "content": "Lyon."}


def parse(row):
    fmt = detect_format(row)
    assert fmt is not None and fmt.is_preference, row
    return fmt, normalize_preference(row, fmt)


def test_trl_explicit_prompt_in_text_and_in_messages():
    fmt, row = parse({"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."})
    assert fmt == SourceFormat.PREFERENCE
    assert (row.prompt, row.chosen, row.rejected, row.label) == ([USER], [GOOD], [BAD], None)
    _, conversational = parse({"prompt": [USER], "chosen": [GOOD], "rejected": [BAD],
                               "system": "Be brief."})  # fmt: skip
    assert conversational.prompt == [{"role": "system", "content": "Be brief."}, USER]
    assert conversational.is_pair


def test_trl_implicit_prompt_is_the_shared_beginning():
    history = [USER, GOOD, {"role": "user", "content": "And of Italy?"}]
    rome, milan = ({"role": "assistant", "content": city} for city in ("Rome.", "Milan."))
    fmt, row = parse({"chosen": [*history, rome], "rejected": [*history, milan]})
    assert fmt == SourceFormat.IMPLICIT_PREFERENCE
    assert row.prompt == history
    assert row.chosen == [{"role": "assistant", "content": "Rome."}]
    assert row.rejected == [{"role": "assistant", "content": "Milan."}]


def test_anthropic_hh_transcripts():
    chosen = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: A joke?\n\nAssistant: Why did the chicken cross the road?"  # noqa: E501
    rejected = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: A joke?\n\nAssistant: No."  # noqa: E501
    fmt, row = parse({"chosen": chosen, "rejected": rejected})
    assert fmt == SourceFormat.IMPLICIT_PREFERENCE
    assert [m["role"] for m in row.prompt] == ["user", "assistant", "user"]
    assert row.prompt[-1]["content"] == "A joke?"
    assert row.chosen == [{"role": "assistant", "content": "Why did the chicken cross the road?"}]
    assert row.rejected == [{"role": "assistant", "content": "No."}]


def test_openai_preference_fine_tuning_rows():
    fmt, row = parse({
        "input": {"messages": [USER], "tools": [], "parallel_tool_calls": True},
        "preferred_output": [GOOD], "non_preferred_output": [BAD],
    })  # fmt: skip
    assert fmt == SourceFormat.OPENAI_PREFERENCE
    assert (row.prompt, row.chosen, row.rejected, row.tools) == ([USER], [GOOD], [BAD], None)


def test_kto_unpaired_rows_with_their_label():
    fmt, good = parse({"prompt": "Capital of France?", "completion": "Paris.", "label": True})
    assert fmt == SourceFormat.KTO
    assert (good.chosen, good.rejected, good.label, good.is_pair) == ([GOOD], None, True, False)
    for spelled, expected in (("false", False), ("0", False), (1, True), ("TRUE", True)):
        _, row = parse({"prompt": [USER], "completion": [BAD], "label": spelled})
        assert row.label is expected


def test_plain_sft_rows_are_not_preference_data():
    for row in ({"prompt": "q", "completion": "a"}, {"messages": [USER, GOOD]}):
        assert not detect_format(row).is_preference
    assert detect_format(["not", "a row"]) is None


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"prompt": "q?", "chosen": "Same.", "rejected": " Same. "}, "are the same"),
        ({"prompt": "q?", "chosen": "a", "rejected": [{"role": "user", "content": "x"}]},
         "roles out of order"),
        ({"prompt": "q?", "chosen": "", "rejected": "b"}, "empty content"),
        ({"prompt": 3, "chosen": "a", "rejected": "b"}, "field 'prompt' must be text"),
        ({"chosen": [USER, GOOD], "rejected": [{"role": "user", "content": "Other?"}, BAD]},
         "the prompt differs between the chosen and rejected sides"),
        ({"chosen": [USER, GOOD], "rejected": [USER, GOOD]}, "conversations are the same"),
        ({"chosen": [GOOD], "rejected": [BAD]}, "share no prompt ending with a user turn"),
        ({"chosen": "Human says hi", "rejected": "\n\nHuman: hi\n\nAssistant: no"},
         "an HH transcript starts with"),
        ({"chosen": "\n\nHuman: Hi\n\nAssistant: Yes",
          "rejected": "\n\nHuman: Bye\n\nAssistant: No"}, "the prompt differs"),
        ({"chosen": 5, "rejected": "x"}, "must be a list of messages or an HH transcript"),
        ({"input": "hi", "preferred_output": [GOOD], "non_preferred_output": [BAD]},
         "field 'input' must be an object with 'messages'"),
        ({"input": {"messages": [USER]}, "preferred_output": GOOD,
          "non_preferred_output": [BAD]}, "field 'preferred_output' must be a non-empty list"),
        ({"input": {"messages": [USER]}, "preferred_output": [GOOD],
          "non_preferred_output": [GOOD]}, "are the same"),
        ({"prompt": "q?", "completion": "a", "label": "maybe"}, "label' must be true or false"),
        ({"prompt": "q?", "completion": None, "label": True}, "missing or empty field: completion"),
    ],
)  # fmt: skip
def test_bad_rows_say_why(row, reason):
    fmt = detect_format(row)
    with pytest.raises(RowError, match=reason):
        normalize_preference(row, fmt)
