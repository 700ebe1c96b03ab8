"""Data tab, review section: what it shows, by name (ReviewView, Shown), and how an example
and the review progress are drawn."""

from __future__ import annotations

import html
from dataclasses import dataclass, fields
from dataclasses import field as dataclass_field
from typing import Any

import gradio as gr

from ftapp.data.formats import prompt_and_answer
from ftapp.records import Example


@dataclass(frozen=True)
class ReviewView:
    """What every review event redraws, by name; `outputs` lists them in `Shown`'s order."""

    progress_bar: gr.HTML
    table: gr.Dataframe
    position_label: gr.Markdown
    position: gr.State
    example_id: gr.State
    header: gr.Markdown
    conversation: gr.Chatbot
    system: gr.Textbox
    prompt: gr.Textbox
    answer: gr.Textbox
    tags: gr.Textbox
    note: gr.Textbox
    history: gr.Dataframe

    @property
    def outputs(self) -> list[Any]:
        return [getattr(self, f.name) for f in fields(self)]


@dataclass(frozen=True)
class Shown:
    """The values of a ReviewView, field by field."""

    progress_bar: str = ""
    table: list = dataclass_field(default_factory=list)
    position_label: str = ""
    position: int = 0
    example_id: int | None = None
    header: str = ""
    conversation: list = dataclass_field(default_factory=list)
    system: str = ""
    prompt: str = ""
    answer: str = ""
    tags: str = ""
    note: str = ""
    history: list = dataclass_field(default_factory=list)

    def values(self) -> list[Any]:
        return [getattr(self, f.name) for f in fields(self)]


def table_row(example: Example, *, marked: bool) -> list:
    prompt, answer = prompt_and_answer(example.messages)
    return [
        "▶" if marked else "",
        example.id,
        example.status.value,
        example.split.value if example.split else "",
        ", ".join(example.tags),
        example.n_tokens,
        _short(prompt),
        _short(answer),
    ]


def _short(text: str, limit: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def header_of(example: Example) -> str:
    parts = [f"**Example #{example.id}**", example.status.value]
    if example.split:
        parts.append(example.split.value)
    parts.append(f"{example.n_tokens} tokens")
    if example.source_line:
        parts.append(f"from line {example.source_line} ({example.source_format})")
    if example.rejected is not None:
        parts.append("a pair: the chosen answer, then the rejected one")
    elif example.label is not None:
        parts.append(f"an answer labelled {'good' if example.label else 'bad'}")
    if example.is_edited:
        parts.append(f"edited by {example.updated_by}")
    if example.reviewed_by:
        parts.append(f"reviewed by {example.reviewed_by} at {example.reviewed_at[:19]}")
    return " · ".join(parts)


def chat_of(example: Example) -> list[dict]:
    """Chatbot messages: system prompts and tool results shown as titled boxes.

    The Chatbot renders HTML even with render_markdown=False (sanitized: `<b>` turns bold and
    `<script>` disappears), so the text is escaped to be shown exactly as written."""
    shown = []
    for message in example.messages:
        content = html.escape(message["content"], quote=False)
        if message["role"] in ("user", "assistant"):
            shown.append({"role": message["role"], "content": content})
        else:
            title = "System prompt" if message["role"] == "system" else "Tool result"
            shown.append({"role": "assistant", "content": content, "metadata": {"title": title}})
    for message in example.rejected or []:  # a pair's other answer, set apart from the chat
        content = html.escape(message["content"], quote=False)
        shown.append({"role": "assistant", "content": content,
                      "metadata": {"title": "Rejected answer"}})  # fmt: skip
    return shown


def progress_html(stats: dict) -> str:
    """Review progress at a glance: a stacked bar of accepted / rejected / pending."""
    counts = stats["by_status"]
    total = max(1, stats["examples"])
    colors = {"accepted": "#16a34a", "rejected": "#dc2626", "pending": "#d1d5db"}
    bars = "".join(
        f'<div style="width:{100 * counts[s] / total:.2f}%;background:{colors[s]}"></div>'
        for s in ("accepted", "rejected", "pending")
    )
    done = counts["accepted"] + counts["rejected"]
    return (
        f'<div style="display:flex;height:10px;border-radius:5px;overflow:hidden">{bars}</div>'
        f'<div style="font-size:0.9em;margin-top:4px">Reviewed {done} of {stats["examples"]} · '
        f"{counts['accepted']} accepted · {counts['rejected']} rejected · "
        f"{counts['pending']} pending</div>"
    )
