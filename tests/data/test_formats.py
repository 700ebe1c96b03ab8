"""Formats: every supported shape normalizes to the right chat messages, auto-detection picks
the right format, and every kind of malformed row is rejected with a reason and its line."""

from __future__ import annotations

import json

import pytest

from ftapp.data.formats import (
    RowError,
    content_hash,
    detect_format,
    normalize,
    prompt_and_answer,
)
from ftapp.data.importer import import_file
from ftapp.records import SourceFormat
from tests.helpers import pc, write_jsonl

M = SourceFormat.MESSAGES
PC = SourceFormat.PROMPT_COMPLETION
ALPACA = SourceFormat.ALPACA
SHAREGPT = SourceFormat.SHAREGPT
PREF = SourceFormat.PREFERENCE

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def u(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def a(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def s(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def t(text: str) -> dict[str, str]:
    return {"role": "tool", "content": text}


# --- each format normalizes correctly --------------------------------------------------------


def test_messages_multi_turn_with_system_prompt_keeps_every_turn_in_order():
    row = {"messages": [s("Be brief."), u("Hi"), a("Hello!"), u("2+2?"), a("4")]}
    result = normalize(row, M)
    assert result.messages == [s("Be brief."), u("Hi"), a("Hello!"), u("2+2?"), a("4")]
    assert result.tools is None


def test_messages_keep_only_role_and_content():
    row = {"messages": [{"role": "user", "content": "Hi", "name": "ada"}, {**a("Yo"), "weight": 1}]}
    assert normalize(row, M).messages == [u("Hi"), a("Yo")]


def test_openai_list_of_text_parts_becomes_one_text():
    row = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hello "},
                                         {"type": "text", "text": "world"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi!"}]},
        ]
    }  # fmt: skip
    assert normalize(row, M).messages == [u("Hello world"), a("Hi!")]


def test_list_of_parts_with_an_image_is_refused_not_flattened():
    image = {"type": "image_url", "image_url": {"url": "http://x/cat.png"}}
    row = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Cat?"}, image]},
                        a("Yes")]}  # fmt: skip
    with pytest.raises(RowError, match=r"message 1 \(user\): content must be text, got a list"):
        normalize(row, M)


def test_messages_with_tool_turns_and_a_tool_schema_list():
    row = {
        "messages": [u("Weather in Paris?"), a('{"name": "get_weather"}'), t('{"temp": 20}'),
                     a("20 degrees.")],
        "tools": [WEATHER_TOOL],
    }  # fmt: skip
    result = normalize(row, M)
    assert [m["role"] for m in result.messages] == ["user", "assistant", "tool", "assistant"]
    assert result.tools == [WEATHER_TOOL]


def test_prompt_completion_as_strings():
    assert normalize(pc("2+2?", "4"), PC).messages == [u("2+2?"), a("4")]


def test_prompt_completion_with_system_field():
    row = {"system": "You are terse.", **pc("2+2?", "4")}
    assert normalize(row, PC).messages == [s("You are terse."), u("2+2?"), a("4")]


def test_prompt_completion_blank_system_is_dropped():
    row = {"system": "   ", **pc("2+2?", "4")}
    assert normalize(row, PC).messages == [u("2+2?"), a("4")]


def test_prompt_completion_as_trl_conversational_lists():
    row = {"prompt": [s("Be kind."), u("Hi"), a("Hello"), u("How are you?")],
           "completion": [a("Fine, thanks.")]}  # fmt: skip
    assert normalize(row, PC).messages == [
        s("Be kind."), u("Hi"), a("Hello"), u("How are you?"), a("Fine, thanks.")
    ]  # fmt: skip


def test_alpaca_instruction_and_input_are_joined_by_a_blank_line():
    row = {"instruction": "Translate to English.", "input": "bonjour", "output": "hello"}
    assert normalize(row, ALPACA).messages == [u("Translate to English.\n\nbonjour"), a("hello")]


@pytest.mark.parametrize("extra", [{}, {"input": ""}, {"input": "  "}, {"input": None}])
def test_alpaca_without_input_uses_the_instruction_alone(extra):
    row = {"instruction": "Say hi.", "output": "Hi!", **extra}
    assert normalize(row, ALPACA).messages == [u("Say hi."), a("Hi!")]


def test_alpaca_with_input_only():
    row = {"instruction": "", "input": "Summarize: cats sleep a lot.", "output": "Cats nap."}
    assert normalize(row, ALPACA).messages == [u("Summarize: cats sleep a lot."), a("Cats nap.")]


def test_alpaca_with_system_and_history_pairs_before_the_last_turn():
    row = {
        "system": "You are a tutor.",
        "history": [["What is 1+1?", "2"], ["And 2+2?", "4"]],
        "instruction": "And 3+3?",
        "input": "",
        "output": "6",
    }
    assert normalize(row, ALPACA).messages == [
        s("You are a tutor."), u("What is 1+1?"), a("2"), u("And 2+2?"), a("4"), u("And 3+3?"),
        a("6"),
    ]  # fmt: skip


def test_sharegpt_with_function_call_observation_and_tools_as_json_text():
    row = {
        "system": "You can call tools.",
        "tools": json.dumps([WEATHER_TOOL]),
        "conversations": [
            {"from": "human", "value": "Weather in Paris?"},
            {"from": "function_call", "value": '{"name": "get_weather", "arguments": {}}'},
            {"from": "observation", "value": '{"temp": 20}'},
            {"from": "gpt", "value": "It is 20 degrees."},
        ],
    }
    result = normalize(row, SHAREGPT)
    assert result.messages == [
        s("You can call tools."), u("Weather in Paris?"),
        a('{"name": "get_weather", "arguments": {}}'), t('{"temp": 20}'), a("It is 20 degrees."),
    ]  # fmt: skip
    assert result.tools == [WEATHER_TOOL]


def test_sharegpt_system_turn_inside_the_conversation_and_role_aliases():
    row = {
        "conversations": [
            {"from": "system", "value": "Be nice."},
            {"from": "user", "value": "Hi"},
            {"from": "chatgpt", "value": "Hello"},
            {"from": "human", "value": "Bye"},
            {"from": "model", "value": "Goodbye"},
        ]
    }
    assert normalize(row, SHAREGPT).messages == [
        s("Be nice."), u("Hi"), a("Hello"), u("Bye"), a("Goodbye")
    ]  # fmt: skip


@pytest.mark.parametrize("tools", [None, "", [], "[]"])
def test_sharegpt_empty_tools_mean_no_tools(tools):
    row = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}],
           "tools": tools}  # fmt: skip
    result = normalize(row, SHAREGPT)
    assert result.tools is None
    # ... so the row is the same example as one without a tools field.
    assert content_hash(result.messages, result.tools) == content_hash([u("Hi"), a("Yo")])


def test_preference_trl_style_strings_keep_the_chosen_answer():
    row = {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."}
    assert normalize(row, PREF).messages == [u("Capital of France?"), a("Paris.")]


def test_preference_trl_conversational_lists_with_system():
    row = {
        "system": "Answer in one word.",
        "prompt": [u("Capital of France?")],
        "chosen": [a("Paris")],
        "rejected": [a("Lyon")],
    }
    assert normalize(row, PREF).messages == [s("Answer in one word."), u("Capital of France?"),
                                             a("Paris")]  # fmt: skip


def test_preference_sharegpt_style():
    row = {
        "conversations": [{"from": "human", "value": "Capital of France?"}],
        "chosen": {"from": "gpt", "value": "Paris."},
        "rejected": {"from": "gpt", "value": "Lyon."},
    }
    assert normalize(row, PREF).messages == [u("Capital of France?"), a("Paris.")]


def test_content_hash_is_exact():
    messages = [u("Hi"), a("Hello")]
    assert content_hash(messages) == content_hash([dict(m) for m in messages])
    assert content_hash(messages) != content_hash([u("Hi"), a("Hello ")])
    assert content_hash(messages) != content_hash(messages, [WEATHER_TOOL])


def test_prompt_and_answer_are_the_last_user_and_assistant_turns():
    assert prompt_and_answer([s("x"), u("one"), a("1"), u("two"), a("2")]) == ("two", "2")


# --- auto-detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"messages": []}, M),
        ({"messages": [], "tools": []}, M),
        ({"prompt": "p", "completion": "c"}, PC),
        ({"prompt": "p", "completion": "c", "system": "s"}, PC),
        ({"instruction": "i", "input": "", "output": "o"}, ALPACA),
        ({"instruction": "i", "output": "o", "history": []}, ALPACA),
        ({"conversations": [], "system": "s", "tools": "[]"}, SHAREGPT),
        ({"prompt": "p", "chosen": "c", "rejected": "r"}, PREF),
        ({"conversations": [], "chosen": {}, "rejected": {}}, PREF),
        ({"messages": [], "chosen": [], "rejected": []}, PREF),
        ({"prompt": "p"}, None),
        ({"instruction": "i"}, None),
        ({"question": "q", "answer": "a"}, None),
        ({}, None),
        ([{"role": "user"}], None),
        ("text", None),
        (None, None),
    ],
)
def test_detect_format(row, expected):
    assert detect_format(row) == expected


def test_import_detects_the_format_from_the_first_recognizable_row(tmp_path, db, count_tokens):
    rows = ['{"broken', {"note": "no known fields"}, {"instruction": "Say hi.", "output": "Hi!"}]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    report = import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    assert report.source_format == "alpaca"
    assert [(p.line, p.reason[:12]) for p in report.problems] == [
        (1, "invalid JSON"), (2, "missing fiel")
    ]  # fmt: skip
    assert [row["source_format"] for row in db["examples"].rows] == ["alpaca"]


def test_explicit_format_overrides_detection(tmp_path, db, count_tokens):
    # The row has chosen/rejected (preference) but the user says prompt_completion.
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "Q", "completion": "A", "chosen": "x",
                                               "rejected": "y"}])  # fmt: skip
    report = import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512,
                         fmt="prompt_completion")  # fmt: skip
    assert report.source_format == "prompt_completion"
    assert json.loads(next(db["examples"].rows)["messages_json"]) == [u("Q"), a("A")]


# --- each format end to end: what lands in the database ---------------------------------------


@pytest.mark.parametrize(
    ("row", "fmt", "messages", "tools"),
    [
        ({"messages": [s("S"), u("Q"), a("A")]}, "messages", [s("S"), u("Q"), a("A")], None),
        (pc("Q", "A"), "prompt_completion", [u("Q"), a("A")], None),
        ({"instruction": "Do", "input": "this", "output": "Done", "system": "S"}, "alpaca",
         [s("S"), u("Do\n\nthis"), a("Done")], None),
        ({"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}],
          "tools": json.dumps([WEATHER_TOOL])}, "sharegpt", [u("Q"), a("A")], [WEATHER_TOOL]),
        ({"prompt": "Q", "chosen": "good", "rejected": "bad"}, "preference", [u("Q"), a("good")],
         None),
    ],
)  # fmt: skip
def test_each_format_is_stored_as_chat_messages(tmp_path, db, count_tokens, row, fmt, messages,
                                                tools):  # fmt: skip
    path = write_jsonl(tmp_path / "a.jsonl", [row])
    report = import_file(db, path, "d", count_tokens=count_tokens, max_tokens=512)
    assert report.source_format == fmt
    [stored] = list(db["examples"].rows)
    assert stored["source_format"] == fmt
    assert json.loads(stored["messages_json"]) == messages
    assert stored["original_messages_json"] is None  # kept separately only once edited
    assert (json.loads(stored["tools_json"]) if stored["tools_json"] else None) == tools
    assert json.loads(stored["raw_json"]) == row  # the rejected answer stays in the raw row


# --- the table of malformed rows --------------------------------------------------------------

GOOD = {
    "messages": {"messages": [u("Good question?"), a("Good answer.")]},
    "pc": pc("Good question?", "Good answer."),
    "alpaca": {"instruction": "Good question?", "input": "", "output": "Good answer."},
    "sharegpt": {"conversations": [{"from": "human", "value": "Good question?"},
                                   {"from": "gpt", "value": "Good answer."}]},
    "preference": {"prompt": "Good question?", "chosen": "Good answer.", "rejected": "Bad."},
}  # fmt: skip


def msgs(*messages, **extra) -> dict:
    return {"messages": list(messages), **extra}


def share(*turns, **extra) -> dict:
    return {"conversations": [{"from": who, "value": value} for who, value in turns], **extra}


LONG = " ".join(["tokens"] * 400)

MALFORMED = [
    # (id, format of the good rows around it, the bad line, expected reason substring)
    ("invalid-json", "messages", '{"messages": [', "invalid JSON"),
    ("invalid-json-trailing-comma", "pc", '{"prompt": "a", "completion": "b",}', "invalid JSON"),
    ("invalid-json-single-quotes", "pc", "{'prompt': 'a', 'completion': 'b'}", "invalid JSON"),
    ("not-an-object-list", "messages", '["Hi", "Hello"]', "expected a JSON object, got a list"),
    ("not-an-object-text", "pc", '"just text"', "expected a JSON object, got text"),
    ("not-an-object-number", "pc", "42", "expected a JSON object, got a number"),
    ("not-an-object-null", "pc", "null", "expected a JSON object, got null"),
    ("missing-field-completion", "pc", {"prompt": "Q"}, "missing field completion"),
    ("missing-field-messages", "messages", {"prompt": "Q", "completion": "A"},
     "missing field messages"),
    ("missing-field-output", "alpaca", {"instruction": "Q"}, "missing field output"),
    ("missing-field-role", "messages", msgs({"content": "Q"}, a("A")),
     "message 1: missing field 'role'"),
    ("missing-prompt-of-pair", "preference", {"chosen": "A", "rejected": "B"},
     "missing field: prompt or conversations"),
    ("empty-messages", "messages", msgs(), "the conversation is empty"),
    ("empty-prompt", "pc", pc("", "A"), "message 1 (user): empty content"),
    ("empty-completion", "pc", pc("Q", ""), "message 2 (assistant): empty content"),
    ("null-completion", "pc", {"prompt": "Q", "completion": None},
     "missing or empty field: completion"),
    ("empty-output", "alpaca", {"instruction": "Q", "output": ""},
     "missing or empty field: output"),
    ("empty-instruction-and-input", "alpaca", {"instruction": " ", "input": "", "output": "A"},
     "missing or empty field: instruction"),
    ("empty-rejected", "preference", {"prompt": "Q", "chosen": "A", "rejected": ""},
     "message 2 (assistant): empty content"),
    ("whitespace-only-content", "messages", msgs(u(" \n\t "), a("A")),
     "message 1 (user): empty content"),
    ("whitespace-only-answer", "sharegpt", share(("human", "Q"), ("gpt", "\u3000 \n")),
     "message 2 (assistant): empty content"),
    ("unknown-role", "messages", msgs(u("Q"), {"role": "bot", "content": "A"}),
     "message 2: unknown role 'bot'"),
    ("role-not-text", "messages", msgs({"role": ["user"], "content": "Q"}, a("A")),
     "message 1: unknown role ['user']"),
    ("unknown-sharegpt-speaker", "sharegpt", share(("human", "Q"), ("bot", "A")),
     "conversations[2]: unknown role 'bot'"),
    ("sharegpt-speaker-not-text", "sharegpt", {"conversations": [{"from": ["human"], "value": "Q"},
                                                                 {"from": "gpt", "value": "A"}]},
     "conversations[1]: unknown role ['human']"),
    ("sharegpt-turn-not-object", "sharegpt", {"conversations": ["Q", "A"]},
     "conversations[1]: expected an object with from and value, got text"),
    ("two-users-in-a-row", "messages", msgs(u("Q"), u("Q again"), a("A")),
     "roles out of order: user after user (message 2)"),
    ("two-assistants-in-a-row", "sharegpt", share(("human", "Q"), ("gpt", "A"), ("gpt", "B")),
     "roles out of order: assistant after assistant (message 3)"),
    ("starts-with-assistant", "messages", msgs(a("A"), u("Q"), a("B")),
     "roles out of order: assistant at the start"),
    ("system-not-first", "messages", msgs(u("Q"), s("S"), a("A")),
     "system message at position 2, not first"),
    ("system-field-and-system-turn", "sharegpt", share(("system", "S2"), ("human", "Q"),
                                                       ("gpt", "A"), system="S1"),
     "system message at position 2, not first"),
    ("tool-right-after-user", "messages", msgs(u("Q"), t("{}"), a("A")),
     "roles out of order: tool after user"),
    ("ends-with-user", "messages", msgs(u("Q"), a("A"), u("Thanks")),
     "roles out of order: ends with a user turn"),
    ("ends-with-tool", "sharegpt", share(("human", "Q"), ("function_call", "{}"),
                                         ("observation", "{}")),
     "ends with a tool turn"),
    ("no-assistant-turn", "messages", msgs(s("S"), u("Q")), "no assistant turn to learn from"),
    ("rejected-answer-from-the-user", "preference",
     {"conversations": [{"from": "human", "value": "Q"}], "chosen": {"from": "gpt", "value": "A"},
      "rejected": {"from": "human", "value": "B"}},
     "roles out of order: user after user"),
    ("content-number", "messages", msgs(u("Q"), {"role": "assistant", "content": 42}),
     "message 2 (assistant): content must be text, got a number"),
    ("content-float", "sharegpt", share(("human", 2.5), ("gpt", "A")),
     "content must be text, got a number"),
    ("content-true", "messages", msgs({"role": "user", "content": True}, a("A")),
     "content must be text, got true/false"),
    ("content-list", "messages", msgs({"role": "user", "content": ["Q", "more"]}, a("A")),
     "message 1 (user): content must be text, got a list"),
    ("content-null", "messages", msgs({"role": "user", "content": None}, a("A")),
     "message 1 (user): content must be text, got null"),
    ("content-missing", "messages", msgs({"role": "user"}, a("A")),
     "message 1 (user): content must be text, got null"),
    ("content-nested-object", "messages", msgs({"role": "user", "content": {"text": "Q"}}, a("A")),
     "message 1 (user): content must be text, got an object"),
    ("completion-number", "pc", pc("Q", 4),
     "field 'completion' must be text or a list of messages, got a number"),
    ("completion-object", "pc", pc("Q", {"text": "A"}),
     "field 'completion' must be text or a list of messages, got an object"),
    ("output-list", "alpaca", {"instruction": "Q", "output": ["A"]},
     "field 'output' must be text, got a list"),
    ("system-number", "pc", {"system": 7, **pc("Q", "A")}, "field 'system' must be text"),
    ("messages-not-a-list", "messages", {"messages": "Q: hi A: hello"},
     "field 'messages' must be a list, got text"),
    ("message-not-object", "messages", msgs("Q", "A"),
     "message 1: expected an object with role and content"),
    ("conversations-not-a-list", "sharegpt", {"conversations": {"from": "human"}},
     "field 'conversations' must be a list, got an object"),
    ("history-not-pairs", "alpaca", {"history": [["Q1"]], "instruction": "Q", "output": "A"},
     "history entry 1 must be a [prompt, answer] pair"),
    ("history-triple", "alpaca", {"history": [["Q1", "A1"], ["Q2", "A2", "x"]],
                                  "instruction": "Q", "output": "A"},
     "history entry 2 must be a [prompt, answer] pair"),
    ("history-not-a-list", "alpaca", {"history": "Q1 A1", "instruction": "Q", "output": "A"},
     "field 'history' must be a list of pairs, not text"),
    ("history-pair-with-number", "alpaca", {"history": [["Q1", 1]], "instruction": "Q",
                                            "output": "A"},
     "message 2 (assistant): content must be text, got a number"),
    ("tools-invalid-json", "sharegpt", share(("human", "Q"), ("gpt", "A"), tools='[{"name": '),
     "field 'tools' is not valid JSON"),
    ("tools-json-nested-too-deeply", "sharegpt",
     share(("human", "Q"), ("gpt", "A"), tools="[" * 100_000),
     "field 'tools' is not valid JSON: nested too deeply"),
    ("tools-not-a-list", "messages", msgs(u("Q"), a("A"), tools={"name": "f"}),
     "field 'tools' must be a list of tool schemas, got an object"),
    ("tools-json-text-not-a-list", "sharegpt", share(("human", "Q"), ("gpt", "A"), tools='"f"'),
     "field 'tools' must be a list of tool schemas, got text"),
    ("longer-than-max-tokens", "pc", pc("Repeat after me.", LONG),
     "longer than the max length"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("good", "bad", "reason"),
    [pytest.param(good, bad, reason, id=case) for case, good, bad, reason in MALFORMED],
)
def test_malformed_row_is_rejected_with_its_line_and_reason(
    tmp_path, db, count_tokens, good, bad, reason
):
    """Line 2 is bad; lines 1 and 3 are good and still imported (skip mode)."""
    first, last = GOOD[good], json.loads(json.dumps(GOOD[good]).replace("Good", "Fine"))
    path = write_jsonl(tmp_path / "rows.jsonl", [first, bad, last])

    report = import_file(db, path, "d", count_tokens=count_tokens, max_tokens=200)

    assert [(p.location, p.line) for p in report.problems] == [("line 2", 2)]
    assert reason in report.problems[0].reason
    assert report.n_imported == 2 and report.duplicates == []
    stored = list(db["examples"].rows)
    assert [row["source_line"] for row in stored] == [1, 3]
    assert [json.loads(row["raw_json"]) for row in stored] == [first, last]
    [import_row] = list(db["imports"].rows)
    assert import_row["n_rejected"] == 1
    assert json.loads(import_row["problems_json"])[0]["line"] == 2


@pytest.mark.parametrize(
    ("good", "bad", "reason"),
    [pytest.param(good, bad, reason, id=case) for case, good, bad, reason in MALFORMED
     if not isinstance(bad, str) and case != "longer-than-max-tokens"],
)  # fmt: skip
def test_malformed_row_raises_row_error_from_normalize(good, bad, reason):
    fmt = {"pc": PC, "messages": M, "alpaca": ALPACA, "sharegpt": SHAREGPT, "preference": PREF}
    with pytest.raises(RowError) as caught:
        normalize(bad, fmt[good])
    assert reason in str(caught.value)
