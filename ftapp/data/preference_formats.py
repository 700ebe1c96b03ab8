"""The formats preference data comes in, normalized to one shape: a prompt conversation with
a chosen and a rejected answer (a pair, for DPO and ORPO), or a prompt with one answer and a
good/bad label (unpaired, for KTO).

Formats (detected from a row's keys by formats.detect_format, most specific first):
- openai_preference: OpenAI's preference fine-tuning JSONL, {"input": {"messages": [...],
  "tools"?}, "preferred_output": [messages], "non_preferred_output": [messages]}
- kto: TRL's unpaired format, {"prompt", "completion", "label": true|false}
- preference: TRL's preference format with an explicit prompt, {"prompt", "chosen",
  "rejected"} (text or message lists; ShareGPT "conversations" or chat "messages" as the
  prompt too)
- implicit_preference: TRL's implicit prompt, {"chosen": [messages], "rejected": [messages]}
  whole conversations whose shared beginning is the prompt; also Anthropic HH-style
  transcripts, {"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": "..."}

A pair whose two answers are the same, or whose two sides don't share their prompt, is a bad
row with its reason (RowError), like any malformed row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ftapp.data.formats import (
    Normalized,
    RowError,
    answer_turns,
    chat_message,
    chat_turns,
    check_fields,
    check_messages,
    kind_of,
    sharegpt_turn,
    system_turn,
    tool_schemas,
)
from ftapp.records import SourceFormat


@dataclass(frozen=True)
class PreferenceRow:
    """One preference example. `prompt` ends with the user turn both answers reply to."""

    prompt: list[dict[str, str]]
    chosen: list[dict[str, str]]  # the preferred answer's turns; an unpaired row's one answer
    rejected: list[dict[str, str]] | None  # None: an unpaired (KTO) row
    label: bool | None  # unpaired rows only: is the answer a good one
    tools: list[Any] | None = None

    @property
    def is_pair(self) -> bool:
        return self.rejected is not None

    def as_example(self) -> Normalized:
        """The example as stored: the prompt with the chosen answer as its conversation."""
        return Normalized(self.prompt + self.chosen, self.tools, self.rejected, self.label)


def normalize_preference(row: Any, fmt: SourceFormat) -> PreferenceRow:
    """Turn one row of the given preference format into a checked PreferenceRow, or raise
    RowError with a reason a user can act on."""
    check_fields(row, fmt)
    normalizer = {
        SourceFormat.OPENAI_PREFERENCE: _from_openai,
        SourceFormat.KTO: _from_kto,
        SourceFormat.PREFERENCE: _from_trl,
        SourceFormat.IMPLICIT_PREFERENCE: _from_implicit,
    }[fmt]
    result = normalizer(row)
    check_messages(result.prompt + result.chosen)
    if result.rejected is not None:
        check_messages(result.prompt + result.rejected)  # a broken rejected side breaks the pair
    for side, answer in (("chosen", result.chosen), ("rejected", result.rejected or [])):
        if any(m["role"] in ("user", "system") for m in answer):
            raise RowError(
                f"the {side} answer holds a user or system turn: an answer is the assistant's "
                "turns (and its tools'), the prompt comes before it"
            )
    if result.rejected is not None and _same(result.chosen, result.rejected):
        raise RowError("the chosen and rejected answers are the same: nothing to prefer")
    return result


# --- one function per format ---------------------------------------------------------------


def _from_openai(row: dict) -> PreferenceRow:
    given = row.get("input")
    if not isinstance(given, dict) or "messages" not in given:
        raise RowError("field 'input' must be an object with 'messages' (OpenAI preference)")
    prompt = _messages(given["messages"], "input.messages")
    chosen = _output(row["preferred_output"], "preferred_output")
    rejected = _output(row["non_preferred_output"], "non_preferred_output")
    return PreferenceRow(prompt, chosen, rejected, None, tool_schemas(given))


def _from_kto(row: dict) -> PreferenceRow:
    prompt = system_turn(row) + chat_turns(row["prompt"], "prompt", default_role="user")
    answer = answer_turns(row["completion"], "completion")
    return PreferenceRow(prompt, answer, None, _label(row["label"]), tool_schemas(row))


def _from_trl(row: dict) -> PreferenceRow:
    if "conversations" in row:
        prompt = _sharegpt_prompt(row)
    elif "prompt" in row:
        prompt = system_turn(row) + chat_turns(row["prompt"], "prompt", default_role="user")
    elif "messages" in row:
        prompt = system_turn(row) + _messages(row["messages"], "messages")
    else:
        raise RowError("missing field: prompt or conversations")
    chosen = answer_turns(row["chosen"], "chosen")
    rejected = answer_turns(row["rejected"], "rejected")
    return PreferenceRow(prompt, chosen, rejected, None, tool_schemas(row))


def _from_implicit(row: dict) -> PreferenceRow:
    chosen = _conversation(row["chosen"], "chosen")
    rejected = _conversation(row["rejected"], "rejected")
    shared = 0
    for mine, theirs in zip(chosen, rejected, strict=False):
        if not _same([mine], [theirs]):
            break
        shared += 1
    if shared == len(chosen) == len(rejected):
        raise RowError("the chosen and rejected conversations are the same: nothing to prefer")
    for side, turns in (("chosen", chosen), ("rejected", rejected)):
        if shared < len(turns) and turns[shared]["role"] != "assistant":
            raise RowError(
                f"the prompt differs between the chosen and rejected sides (message "
                f"{shared + 1} of {side} is a {turns[shared]['role']} turn where the answers "
                "should begin)"
            )
    prompt = system_turn(row) + chosen[:shared]
    if not shared or chosen[shared - 1]["role"] != "user":
        raise RowError("the chosen and rejected sides share no prompt ending with a user turn")
    return PreferenceRow(prompt, chosen[shared:], rejected[shared:], None, tool_schemas(row))


# --- helpers -------------------------------------------------------------------------------

# An Anthropic HH transcript: "\n\nHuman: ...\n\nAssistant: ..." turns, in that order.
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def _messages(value: Any, field: str) -> list[dict[str, str]]:
    """A prompt given as a list of chat messages (OpenAI's input.messages)."""
    if not isinstance(value, list):
        raise RowError(f"field '{field}' must be a list of messages, got {kind_of(value)}")
    return [chat_message(m, n) for n, m in enumerate(value, start=1)]


def _sharegpt_prompt(row: dict) -> list[dict[str, str]]:
    """A ShareGPT "conversations" prompt: the turns up to the user's question."""
    turns = row["conversations"]
    if not isinstance(turns, list):
        raise RowError(f"field 'conversations' must be a list, got {kind_of(turns)}")
    return system_turn(row) + [
        sharegpt_turn(turn, f"conversations[{n}]") for n, turn in enumerate(turns, start=1)
    ]


def _output(value: Any, field: str) -> list[dict[str, str]]:
    """OpenAI's preferred/non-preferred output: a list with the assistant message."""
    if not isinstance(value, list) or not value:
        raise RowError(f"field '{field}' must be a non-empty list of messages, got "
                       f"{kind_of(value)}")  # fmt: skip
    return [chat_message(m, n) for n, m in enumerate(value, start=1)]


def _conversation(value: Any, field: str) -> list[dict[str, str]]:
    """One whole side of an implicit-prompt pair: chat messages, or an HH transcript."""
    if isinstance(value, str):
        return _hh_transcript(value, field)
    if isinstance(value, list):
        return [chat_message(m, n) for n, m in enumerate(value, start=1)]
    raise RowError(f"field '{field}' must be a list of messages or an HH transcript, got "
                   f"{kind_of(value)}")  # fmt: skip


def _hh_transcript(text: str, field: str) -> list[dict[str, str]]:
    parts = _HH_TURN.split("\n\n" + text.lstrip("\n"))
    if parts[0].strip():
        raise RowError(f"field '{field}': an HH transcript starts with '\\n\\nHuman: ', "
                       f"got {parts[0][:40]!r}")  # fmt: skip
    turns = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        turns.append({"role": _HH_ROLES[speaker], "content": content.strip()})
    if not turns:
        raise RowError(f"field '{field}' has no 'Human:' or 'Assistant:' turn")
    return turns


def _label(value: Any) -> bool:
    """KTO's label: true (a good answer) or false; CSV cells spell it as text or 0/1."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "good"):
        return True
    if text in ("false", "0", "no", "bad"):
        return False
    raise RowError(f"field 'label' must be true or false, got {value!r}")


def _same(first: list[dict[str, str]], second: list[dict[str, str]]) -> bool:
    """Two answers the same once surrounding whitespace is ignored."""
    return [(m.get("role"), str(m.get("content")).strip()) for m in first] == [
        (m.get("role"), str(m.get("content")).strip()) for m in second
    ]
