"""The example formats users bring, normalized to chat messages.

Every example becomes a list of {"role", "content"} messages with roles system, user,
assistant and tool (plus an optional tool schema list). The original row is kept as it was.
A row that can't be normalized raises `RowError` with a reason a user can act on; the
importer adds the line number.

Formats (auto-detected from a row's keys):
- messages: OpenAI chat, {"messages": [{"role": ..., "content": ...}, ...]}
- prompt_completion: {"prompt": "...", "completion": "..."} (strings or message lists)
- alpaca: {"instruction", "input", "output"} with optional "system" and "history"
- sharegpt: {"conversations": [{"from": "human"|"gpt"|..., "value": ...}]}, optional
  "system" and "tools"; function_call turns become assistant turns, observations tool turns
- preference formats (TRL with an explicit or implicit prompt, Anthropic HH, OpenAI's
  preference fine-tuning, TRL's unpaired KTO rows) are detected here and normalized in
  preference_formats.py: the prompt with the chosen answer is the example's conversation,
  the rejected answer (or a good/bad label) is kept beside it
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ftapp.records import SourceFormat

ROLES = ("system", "user", "assistant", "tool")

SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}

# Which roles may follow which: the conversation opens with a user turn (after an optional
# system prompt); a tool result follows an assistant turn that called it.
ALLOWED_NEXT = {
    None: {"system", "user"},
    "system": {"user"},
    "user": {"assistant"},
    "assistant": {"user", "tool"},
    "tool": {"assistant", "tool"},
}

REQUIRED_FIELDS = {
    SourceFormat.MESSAGES: ("messages",),
    SourceFormat.PROMPT_COMPLETION: ("prompt", "completion"),
    SourceFormat.ALPACA: ("instruction", "output"),
    SourceFormat.SHAREGPT: ("conversations",),
    SourceFormat.PREFERENCE: ("chosen", "rejected"),
    SourceFormat.IMPLICIT_PREFERENCE: ("chosen", "rejected"),
    SourceFormat.OPENAI_PREFERENCE: ("input", "preferred_output", "non_preferred_output"),
    SourceFormat.KTO: ("prompt", "completion", "label"),
}


class RowError(Exception):
    """A row that can't become an example; the message is the reason shown to the user."""


@dataclass(frozen=True)
class Normalized:
    messages: list[dict[str, str]]
    tools: list[Any] | None = None
    rejected: list[dict[str, str]] | None = None  # a preference pair's rejected answer
    label: bool | None = None  # an unpaired preference row's: is the answer good


def detect_format(row: Any) -> SourceFormat | None:
    """The format a row's keys announce, or None when they match none."""
    if not isinstance(row, dict):
        return None
    keys = set(row)
    if {"preferred_output", "non_preferred_output"} <= keys:
        return SourceFormat.OPENAI_PREFERENCE
    if {"prompt", "completion", "label"} <= keys:
        return SourceFormat.KTO
    if {"chosen", "rejected"} <= keys:
        explicit = bool(keys & {"prompt", "conversations", "messages"})
        return SourceFormat.PREFERENCE if explicit else SourceFormat.IMPLICIT_PREFERENCE
    if "messages" in keys:
        return SourceFormat.MESSAGES
    if "conversations" in keys:
        return SourceFormat.SHAREGPT
    if "instruction" in keys and "output" in keys:
        return SourceFormat.ALPACA
    if "prompt" in keys and "completion" in keys:
        return SourceFormat.PROMPT_COMPLETION
    return None


def normalize(row: Any, fmt: SourceFormat) -> Normalized:
    """Turn one row of the given format into checked chat messages (a preference row: the
    prompt with the chosen answer, the rejected answer or the label beside), or raise RowError."""
    if fmt.is_preference:
        # Imported here: preference_formats builds on this module's helpers.
        from ftapp.data.preference_formats import normalize_preference

        return normalize_preference(row, fmt).as_example()
    check_fields(row, fmt)
    normalizer = {
        SourceFormat.MESSAGES: _from_messages,
        SourceFormat.PROMPT_COMPLETION: _from_prompt_completion,
        SourceFormat.ALPACA: _from_alpaca,
        SourceFormat.SHAREGPT: _from_sharegpt,
    }[fmt]
    result = normalizer(row)
    check_messages(result.messages)
    return result


def check_fields(row: Any, fmt: SourceFormat) -> None:
    """Raise RowError unless the row is an object with the fields its format needs."""
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object, got {kind_of(row)}")
    missing = [name for name in REQUIRED_FIELDS[fmt] if name not in row]
    if missing:
        got = ", ".join(sorted(map(str, row))) or "no fields"
        raise RowError(f"missing field {', '.join(missing)} for format {fmt} (the row has {got})")


def check_messages(messages: list[dict[str, str]]) -> None:
    """Raise RowError unless the messages are a conversation a model can learn from."""
    if not messages:
        raise RowError("the conversation is empty")
    previous = None
    for number, message in enumerate(messages, start=1):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RowError(f"message {number}: unknown role {role!r} (use {', '.join(ROLES)})")
        if not isinstance(content, str):
            got = kind_of(content)
            raise RowError(f"message {number} ({role}): content must be text, got {got}")
        if not content.strip():
            raise RowError(f"message {number} ({role}): empty content")
        if role == "system" and number != 1:
            raise RowError(f"roles out of order: system message at position {number}, not first")
        if role not in ALLOWED_NEXT[previous]:
            after = f"after {previous}" if previous else "at the start"
            raise RowError(f"roles out of order: {role} {after} (message {number})")
        previous = role
    if not any(m["role"] == "assistant" for m in messages):
        raise RowError("no assistant turn to learn from")
    if messages[-1]["role"] != "assistant":
        raise RowError(f"roles out of order: ends with a {messages[-1]['role']} turn, no answer")


def unpaired_surrogate(value: Any) -> str | None:
    """The first unpaired UTF-16 surrogate in a parsed value's strings, as an escape ("\\ud83d"),
    or None. JSON can spell one (half an emoji, `"\\ud83d"`), but it is not text: SQLite, the
    tokenizer and every export fail on it, so a row holding one is refused."""
    return surrogate_in_json(json.dumps(value, ensure_ascii=False, default=str))


def surrogate_in_json(text: str) -> str | None:
    """unpaired_surrogate of a value from its `json.dumps(value, ensure_ascii=False)` text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return ascii(exc.object[exc.start])[1:-1]
    return None


def content_hash(
    messages: list[dict[str, str]],
    tools: Any = None,
    rejected: list[dict[str, str]] | None = None,
    label: bool | None = None,
) -> str:
    """Identity of an example's content, for exact-duplicate detection. A preference example's
    rejected answer or label is part of it; an SFT example's hash is what it always was."""
    parts: list[Any] = [messages, tools]
    if rejected is not None or label is not None:
        parts += [rejected, label]
    canonical = json.dumps(parts, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def split_prompt(
    messages: list[dict[str, str]],
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A conversation as (prompt, answer): the answer is the turns after the last user turn
    (how a preference example's chosen answer follows its prompt)."""
    end = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1) + 1
    return messages[:end], messages[end:]


def prompt_and_answer(messages: list[dict[str, str]]) -> tuple[str, str]:
    """The last user turn and the last assistant turn: what a reviewer reads first."""
    prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    answer = next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), "")
    return prompt, answer


# --- one function per format ---------------------------------------------------------------


def _from_messages(row: dict) -> Normalized:
    raw = row["messages"]
    if not isinstance(raw, list):
        raise RowError(f"field 'messages' must be a list, got {kind_of(raw)}")
    return Normalized([chat_message(m, n) for n, m in enumerate(raw, start=1)], tool_schemas(row))


def _from_prompt_completion(row: dict) -> Normalized:
    messages = system_turn(row)
    messages += chat_turns(row["prompt"], "prompt", default_role="user")
    messages += chat_turns(row["completion"], "completion", default_role="assistant")
    return Normalized(messages, tool_schemas(row))


def _from_alpaca(row: dict) -> Normalized:
    instruction = _text(row, "instruction", required=False)
    extra = _text(row, "input", required=False)
    output = _text(row, "output")
    prompt = "\n\n".join(part for part in (instruction, extra) if part.strip())
    if not prompt.strip():
        raise RowError("missing or empty field: instruction (and input)")
    messages = system_turn(row)
    history = row.get("history") or []
    if not isinstance(history, list):
        raise RowError(f"field 'history' must be a list of pairs, not {kind_of(history)}")
    for number, pair in enumerate(history, start=1):
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise RowError(f"history entry {number} must be a [prompt, answer] pair")
        messages.append({"role": "user", "content": pair[0]})
        messages.append({"role": "assistant", "content": pair[1]})
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return Normalized(messages, tool_schemas(row))


def _from_sharegpt(row: dict) -> Normalized:
    turns = row["conversations"]
    if not isinstance(turns, list):
        raise RowError(f"field 'conversations' must be a list, got {kind_of(turns)}")
    messages = system_turn(row)
    for number, turn in enumerate(turns, start=1):
        messages.append(sharegpt_turn(turn, f"conversations[{number}]"))
    return Normalized(messages, tool_schemas(row))


def answer_turns(value: Any, field: str) -> list[dict[str, str]]:
    """A preference answer: text, a list of messages, or one ShareGPT turn."""
    if isinstance(value, dict):
        return [sharegpt_turn(value, field)]
    return chat_turns(value, field, default_role="assistant")


# --- helpers -------------------------------------------------------------------------------


def chat_message(message: Any, number: int) -> dict[str, str]:
    if not isinstance(message, dict):
        raise RowError(f"message {number}: expected an object with role and content")
    if "role" not in message:
        raise RowError(f"message {number}: missing field 'role'")
    content = message.get("content")
    # OpenAI's list-of-parts content: keep it when every part is text.
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        content = "".join(p["text"] for p in content)
    return {"role": message["role"], "content": content}


def sharegpt_turn(turn: Any, where: str) -> dict[str, str]:
    if not isinstance(turn, dict):
        raise RowError(f"{where}: expected an object with from and value, got {kind_of(turn)}")
    speaker = turn.get("from")
    if not isinstance(speaker, str) or speaker not in SHAREGPT_ROLES:
        raise RowError(f"{where}: unknown role {speaker!r} (use {', '.join(SHAREGPT_ROLES)})")
    return {"role": SHAREGPT_ROLES[speaker], "content": turn.get("value")}


def chat_turns(value: Any, field: str, *, default_role: str) -> list[dict[str, str]]:
    """A prompt/completion field: a string, or a list of chat messages (TRL conversational)."""
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    if isinstance(value, list):
        return [chat_message(m, n) for n, m in enumerate(value, start=1)]
    if value is None:
        raise RowError(f"missing or empty field: {field}")
    raise RowError(f"field '{field}' must be text or a list of messages, got {kind_of(value)}")


def _text(row: dict, field: str, *, required: bool = True) -> str:
    value = row.get(field)
    if value is None:
        if required:
            raise RowError(f"missing or empty field: {field}")
        return ""
    if not isinstance(value, str):
        raise RowError(f"field '{field}' must be text, got {kind_of(value)}")
    if required and not value.strip():
        raise RowError(f"missing or empty field: {field}")
    return value


def system_turn(row: dict) -> list[dict[str, str]]:
    system = _text(row, "system", required=False)
    return [{"role": "system", "content": system}] if system.strip() else []


def tool_schemas(row: dict) -> list[Any] | None:
    tools = row.get("tools")
    if tools in (None, "", []):
        return None
    if isinstance(tools, str):  # ShareGPT files often carry the tool schema as JSON text
        try:
            tools = json.loads(tools, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise RowError(f"field 'tools' is not valid JSON: {exc.msg}") from None
        except ValueError as exc:  # NaN or Infinity, or a number too long to convert
            raise RowError(f"field 'tools' is not valid JSON: {exc}") from None
        except RecursionError:
            raise RowError("field 'tools' is not valid JSON: nested too deeply") from None
        surrogate = unpaired_surrogate(tools)
        if surrogate:
            raise RowError(f"field 'tools' holds an unpaired surrogate ({surrogate}), not text")
        if tools == []:  # "[]" means no tools, like a missing field (same duplicate hash)
            return None
    if not isinstance(tools, list):
        raise RowError(f"field 'tools' must be a list of tool schemas, got {kind_of(tools)}")
    return tools


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; stored, they would break every JSON reader downstream.
    raise ValueError(f"{name} is not allowed in JSON")


def kind_of(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "text",
        bool: "true/false",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)
