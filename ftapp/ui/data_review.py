"""Data tab, review section: browse a dataset page by page with filters, and accept, reject,
edit, tag and annotate one example at a time (keyboard: a accept, r reject, j/→ next,
k/← previous)."""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from ftapp.data import review
from ftapp.data.formats import prompt_and_answer
from ftapp.data.stats import dataset_stats
from ftapp.records import Example, Role
from ftapp.services import Services
from ftapp.store import datasets as store
from ftapp.ui.common import current_user, guarded

PAGE_SIZE = 20
ALL = "all"
TABLE_HEADERS = ["", "id", "status", "split", "tags", "tokens", "prompt", "answer"]
HISTORY_HEADERS = ["when", "who", "action", "detail"]


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


def build_review_section(services: Services, dataset: gr.Dropdown) -> dict:
    with gr.Accordion("Review and label", open=True):
        progress_bar = gr.HTML(elem_id="ft-review-progress")
        with gr.Row():
            status_filter = gr.Dropdown(
                [ALL, "pending", "accepted", "rejected"], value=ALL, label="Status"
            )
            split_filter = gr.Dropdown(
                [ALL, "train", "validation", "test", "none"], value=ALL, label="Split"
            )
            tag_filter = gr.Textbox(label="Tag", placeholder="exact tag")
            search = gr.Textbox(label="Search", placeholder="text in prompts, answers, notes")
        table = gr.Dataframe(
            headers=TABLE_HEADERS,
            interactive=False,
            wrap=False,
            max_height=420,
            elem_id="ft-review-table",
        )
        with gr.Row():
            bulk_accept = gr.Button("Accept all matching", size="sm")
            bulk_reject = gr.Button("Reject all matching", size="sm")
            bulk_pending = gr.Button("Reset matching to pending", size="sm")
        with gr.Row():
            prev_button = gr.Button("← Previous (k)", elem_id="ft-prev", size="sm")
            position_label = gr.Markdown(elem_id="ft-position")
            next_button = gr.Button("Next (j) →", elem_id="ft-next", size="sm")
        header = gr.Markdown(elem_id="ft-example-header")
        conversation = gr.Chatbot(
            label="Conversation", render_markdown=False, height=320, elem_id="ft-conversation"
        )
        with gr.Row():
            accept_button = gr.Button("Accept (a)", variant="primary", elem_id="ft-accept")
            reject_button = gr.Button("Reject (r)", variant="stop", elem_id="ft-reject")
            pending_button = gr.Button("Back to pending", elem_id="ft-pending")
        system_box = gr.Textbox(label="System prompt", lines=2, elem_id="ft-edit-system")
        prompt_box = gr.Textbox(label="Prompt (last user turn)", lines=4, elem_id="ft-edit-prompt")
        answer_box = gr.Textbox(
            label="Answer (last assistant turn)", lines=6, elem_id="ft-edit-answer"
        )
        with gr.Row():
            tags_box = gr.Textbox(label="Tags (comma-separated)", elem_id="ft-edit-tags")
            note_box = gr.Textbox(label="Note", elem_id="ft-edit-note")
        with gr.Row():
            save_button = gr.Button("Save edits, tags and note", elem_id="ft-save")
            revert_button = gr.Button("Revert to the imported text", elem_id="ft-revert")
        with gr.Accordion("History of this example", open=False):
            history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, wrap=True)
    position = gr.State(0)
    example_id = gr.State(None)

    filters = [status_filter, split_filter, tag_filter, search]
    view_inputs = [dataset, *filters, position]
    view_outputs = [
        progress_bar, table, position_label, position, example_id, header, conversation,
        system_box, prompt_box, answer_box, tags_box, note_box, history,
    ]  # fmt: skip

    def render(name: str | None, filters: Filters, at: int) -> list:
        """Everything the section shows for the example at position `at` of the filtered list."""
        if not name:
            return ["", [], "No dataset selected.", 0, None, "", [], "", "", "", "", "", []]
        with services.db() as db:
            target = store.get_dataset(db, name)
            stats = dataset_stats(db, name)
            _, total = store.query_examples(db, target.id, limit=0, **filters.__dict__)
            at = max(0, min(at, total - 1))
            page_start = (at // PAGE_SIZE) * PAGE_SIZE
            page, _ = store.query_examples(
                db, target.id, offset=page_start, limit=PAGE_SIZE, **filters.__dict__
            )
            current = page[at - page_start] if page else None
            events = store.example_events(db, current.id) if current else []
        rows = [_table_row(e, marked=(i + page_start == at)) for i, e in enumerate(page)]
        label = f"{at + 1} of {total} matching" if total else "No example matches the filters."
        if current is None:
            return [_progress_html(stats), rows, label, at, None, "", [], "", "", "", "", "", []]
        prompt, answer = prompt_and_answer(current.messages)
        system = current.messages[0]["content"] if current.messages[0]["role"] == "system" else ""
        return [
            _progress_html(stats), rows, label, at, current.id, _header(current),
            _chat(current), system, prompt, answer, ", ".join(current.tags), current.note,
            [[e["created_at"][:19], e["user_name"], e["action"], e["detail_json"][:300]]
             for e in events],
        ]  # fmt: skip

    @guarded(services, Role.ADMIN)
    def show(name: str | None, status: str | None, split: str | None, tag: str, text: str,
             at: int, request: gr.Request):  # fmt: skip
        return render(name, Filters.of(status, split, tag, text), at)

    @guarded(services, Role.ADMIN)
    def show_first(name: str | None, status: str | None, split: str | None, tag: str, text: str,
                   at: int, request: gr.Request):  # fmt: skip
        return render(name, Filters.of(status, split, tag, text), 0)

    @guarded(services, Role.ADMIN)
    def step(name: str | None, status: str | None, split: str | None, tag: str, text: str,
             at: int, delta: int, request: gr.Request):  # fmt: skip
        return render(name, Filters.of(status, split, tag, text), at + delta)

    @guarded(services, Role.ADMIN)
    def select_row(name: str | None, status: str | None, split: str | None, tag: str, text: str,
                   at: int, evt: gr.SelectData, request: gr.Request):  # fmt: skip
        page_start = (at // PAGE_SIZE) * PAGE_SIZE
        return render(name, Filters.of(status, split, tag, text), page_start + evt.index[0])

    def label_with(new_status: str):
        @guarded(services, Role.ADMIN)
        def label(name: str | None, status: str | None, split: str | None, tag: str, text: str,
                  at: int, current_id: int | None, request: gr.Request):  # fmt: skip
            if current_id is None:
                raise gr.Error("No example selected.")
            with services.db() as db:
                review.set_status(
                    db, [current_id], new_status, current_user(services, request).name
                )
            view = render(name, Filters.of(status, split, tag, text), at)
            # Still showing the same example (it matches the filters): move on to the next.
            if view[4] == current_id:
                view = render(name, Filters.of(status, split, tag, text), at + 1)
            return view

        return label

    def bulk_with(new_status: str):
        @guarded(services, Role.ADMIN)
        def bulk(name: str | None, status: str | None, split: str | None, tag: str, text: str,
                 at: int, request: gr.Request):  # fmt: skip
            if not name:
                raise gr.Error("No dataset selected.")
            selected = Filters.of(status, split, tag, text)
            with services.db() as db:
                changed = review.set_status_where(
                    db, name, new_status, current_user(services, request).name, **selected.__dict__
                )
            gr.Info(f"{changed} examples set to {new_status}.")
            return render(name, selected, at)

        return bulk

    @guarded(services, Role.ADMIN)
    def save(name: str | None, status: str | None, split: str | None, tag: str, text: str,
             at: int, current_id: int | None, system: str, prompt: str, answer: str, tags: str,
             note: str, request: gr.Request):  # fmt: skip
        if current_id is None:
            raise gr.Error("No example selected.")
        with services.db() as db:
            review.save_example(
                db, current_id, system=system, prompt=prompt, answer=answer,
                tags=review.parse_tags(tags), note=note or "",
                user=current_user(services, request).name,
                count_tokens=services.count_tokens,
            )  # fmt: skip
        gr.Info(f"Example #{current_id} saved.")
        return render(name, Filters.of(status, split, tag, text), at)

    @guarded(services, Role.ADMIN)
    def revert(name: str | None, status: str | None, split: str | None, tag: str, text: str,
               at: int, current_id: int | None, request: gr.Request):  # fmt: skip
        if current_id is None:
            raise gr.Error("No example selected.")
        with services.db() as db:
            review.revert_example(
                db, current_id, current_user(services, request).name, services.count_tokens
            )
        return render(name, Filters.of(status, split, tag, text), at)

    dataset.change(show_first, view_inputs, view_outputs, api_name="review_open")
    for box in filters:
        event = box.submit if isinstance(box, gr.Textbox) else box.change
        event(show_first, view_inputs, view_outputs, api_name=False)
    table.select(select_row, view_inputs, view_outputs, api_name="review_select")
    prev_button.click(_stepper(step, -1), view_inputs, view_outputs, api_name="review_previous")
    next_button.click(_stepper(step, 1), view_inputs, view_outputs, api_name="review_next")
    with_id = [*view_inputs, example_id]
    edit_inputs = [*with_id, system_box, prompt_box, answer_box, tags_box, note_box]
    changes = [
        accept_button.click(
            label_with("accepted"), with_id, view_outputs, api_name="review_accept"
        ),
        reject_button.click(
            label_with("rejected"), with_id, view_outputs, api_name="review_reject"
        ),
        pending_button.click(
            label_with("pending"), with_id, view_outputs, api_name="review_pending"
        ),
        bulk_accept.click(bulk_with("accepted"), view_inputs, view_outputs, api_name="bulk_accept"),
        bulk_reject.click(bulk_with("rejected"), view_inputs, view_outputs, api_name="bulk_reject"),
        bulk_pending.click(
            bulk_with("pending"), view_inputs, view_outputs, api_name="bulk_pending"
        ),
        save_button.click(save, edit_inputs, view_outputs, api_name="review_save"),
        revert_button.click(revert, with_id, view_outputs, api_name="review_revert"),
    ]
    return {
        "refresh": (show, view_inputs, view_outputs),
        "refresh_first": (show_first, view_inputs, view_outputs),
        "events": changes,
    }


def _stepper(step, delta: int):
    """A handler with the plain view signature that moves `delta` examples."""

    def move(name, status, split, tag, text, at, request: gr.Request):
        return step(name, status, split, tag, text, at, delta, request)

    move.ftapp_role = step.ftapp_role  # the guarded `step` checks the role
    return move


def _table_row(example: Example, *, marked: bool) -> list:
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


def _header(example: Example) -> str:
    parts = [f"**Example #{example.id}**", example.status.value]
    if example.split:
        parts.append(example.split.value)
    parts.append(f"{example.n_tokens} tokens")
    if example.source_line:
        parts.append(f"from line {example.source_line} ({example.source_format})")
    if example.is_edited:
        parts.append(f"edited by {example.updated_by}")
    if example.reviewed_by:
        parts.append(f"reviewed by {example.reviewed_by} at {example.reviewed_at[:19]}")
    return " · ".join(parts)


def _chat(example: Example) -> list[dict]:
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
    return shown


def _progress_html(stats: dict) -> str:
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
