"""Data tab, review section: what it shows, by name (ReviewView, Shown), how an example (a
preference example's answers side by side) and the review progress are drawn, and `render`,
the values of the whole view for one position of the filtered examples."""

from __future__ import annotations

import html
from dataclasses import dataclass, fields, replace
from dataclasses import field as dataclass_field
from typing import Any

import gradio as gr

from ftapp.data import review_page
from ftapp.data.formats import prompt_and_answer, split_prompt
from ftapp.data.stats import preference_line
from ftapp.records import Example
from ftapp.services import Services

PAGE_SIZE = 20
ALL = "all"


@dataclass(frozen=True)
class Filters:
    status: str | None
    split: str | None
    tag: str | None
    search: str | None

    @classmethod
    def of(cls, status: str, split: str, tag: str, search: str) -> Filters:
        return cls(
            status=None if status in (ALL, None) else status,
            split=None if split in (ALL, None) else split,
            tag=(tag or "").strip() or None,
            search=(search or "").strip() or None,
        )


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
    answers: gr.HTML  # a preference example's answers side by side
    pair_tools: gr.Row  # shown for a pair (Swap)
    label_tools: gr.Row  # shown for an unpaired row (Good, Bad)
    system: gr.Textbox
    prompt: gr.Textbox
    answer: gr.Textbox
    rejected_column: gr.Column  # shown for a pair
    rejected: gr.Textbox
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
    answers: str = ""
    pair_tools: dict = dataclass_field(default_factory=lambda: gr.update(visible=False))
    label_tools: dict = dataclass_field(default_factory=lambda: gr.update(visible=False))
    system: str = ""
    prompt: str = ""
    answer: str = ""
    rejected_column: dict = dataclass_field(default_factory=lambda: gr.update(visible=False))
    rejected: str = ""
    tags: str = ""
    note: str = ""
    history: list = dataclass_field(default_factory=list)

    def values(self) -> list[Any]:
        return [getattr(self, f.name) for f in fields(self)]


def render(services: Services, name: str | None, filters: Filters, at: int) -> list:
    """Everything the section shows for the example at position `at` of the filtered list."""
    if not name:
        return Shown(position_label="No dataset selected.").values()
    with services.db() as db:
        page = review_page.review_page(db, name, at, PAGE_SIZE, **filters.__dict__)
    rows = [table_row(e, marked=(i + page.page_start == page.at))
            for i, e in enumerate(page.examples)]  # fmt: skip
    label = (f"{page.at + 1} of {page.total} matching" if page.total
             else "No example matches the filters.")  # fmt: skip
    shown = Shown(progress_bar=progress_html(page.stats), table=rows, position_label=label,
                  position=page.at)  # fmt: skip
    current = page.current
    if current is None:
        return shown.values()
    prompt, answer = prompt_and_answer(current.messages)
    _, rejected = prompt_and_answer(current.rejected or [])
    system = current.messages[0]["content"] if current.messages[0]["role"] == "system" else ""
    is_pair = current.rejected is not None
    return replace(
        shown, example_id=current.id, header=header_of(current), conversation=chat_of(current),
        answers=answers_html(current), pair_tools=gr.update(visible=is_pair),
        label_tools=gr.update(visible=current.label is not None),
        system=system, prompt=prompt, answer=answer,
        rejected_column=gr.update(visible=is_pair), rejected=rejected,
        tags=", ".join(current.tags), note=current.note,
        history=[[e["created_at"][:19], e["user_name"], e["action"], e["detail_json"][:300]]
                 for e in page.events],
    ).values()  # fmt: skip


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
        parts.append("a pair: the chosen and the rejected answer side by side")
    elif example.label is not None:
        parts.append(f"an answer labelled {'good' if example.label else 'bad'}")
    if example.is_edited:
        parts.append(f"edited by {example.updated_by}")
    if example.reviewed_by:
        parts.append(f"reviewed by {example.reviewed_by} at {example.reviewed_at[:19]}")
    return " · ".join(parts)


def chat_of(example: Example) -> list[dict]:
    """Chatbot messages: system prompts and tool results shown as titled boxes. A preference
    example shows its prompt only: its answers are side by side below (answers_html).

    The Chatbot renders HTML even with render_markdown=False (sanitized: `<b>` turns bold and
    `<script>` disappears), so the text is escaped to be shown exactly as written."""
    is_preference = example.rejected is not None or example.label is not None
    messages = split_prompt(example.messages)[0] if is_preference else example.messages
    shown = []
    for message in messages:
        content = html.escape(message["content"], quote=False)
        if message["role"] in ("user", "assistant"):
            shown.append({"role": message["role"], "content": content})
        else:
            title = "System prompt" if message["role"] == "system" else "Tool result"
            shown.append({"role": "assistant", "content": content, "metadata": {"title": title}})
    return shown


GOOD_COLOR, BAD_COLOR = "#16a34a", "#dc2626"


def answers_html(example: Example) -> str:
    """A preference example's answers in columns: "Chosen" and "Rejected" for a pair, the one
    answer under its "Good" or "Bad" label for an unpaired row; empty for an SFT example."""
    answer = split_prompt(example.messages)[1]
    if example.rejected is not None:
        columns = [("Chosen", answer, GOOD_COLOR), ("Rejected", example.rejected, BAD_COLOR)]
    elif example.label is not None:
        columns = [("Good" if example.label else "Bad", answer,
                    GOOD_COLOR if example.label else BAD_COLOR)]  # fmt: skip
    else:
        return ""
    cells = "".join(
        f'<div class="ft-answer" style="flex:1;min-width:0;border:2px solid {color};'
        f'border-radius:6px;padding:8px"><div style="font-weight:600;color:{color}">{title}'
        f"</div>{_turns_html(turns)}</div>"
        for title, turns, color in columns
    )
    return f'<div style="display:flex;gap:12px;align-items:stretch">{cells}</div>'


def _turns_html(turns: list[dict[str, str]]) -> str:
    """An answer's turns, escaped (shown exactly as written); tool results titled."""
    parts = []
    for turn in turns:
        title = "" if turn["role"] == "assistant" else f"<em>{html.escape(turn['role'])}:</em> "
        text = html.escape(turn["content"], quote=False)
        parts.append(f'<div style="white-space:pre-wrap;margin-top:4px">{title}{text}</div>')
    return "".join(parts)


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
    pairs = preference_line(stats)
    return (
        f'<div style="display:flex;height:10px;border-radius:5px;overflow:hidden">{bars}</div>'
        f'<div style="font-size:0.9em;margin-top:4px">Reviewed {done} of {stats["examples"]} · '
        f"{counts['accepted']} accepted · {counts['rejected']} rejected · "
        f"{counts['pending']} pending{' · ' + pairs if pairs else ''}</div>"
    )
