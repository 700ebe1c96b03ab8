"""Data tab, review section: browse a dataset page by page with filters, and accept, reject,
edit, tag and annotate one example at a time (keyboard: a accept, r reject, j/→ next,
k/← previous)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import gradio as gr

from ftapp.data import review
from ftapp.data.formats import prompt_and_answer
from ftapp.records import Role
from ftapp.services import Services
from ftapp.ui.common import TabWiring, current_user, guarded, require
from ftapp.ui.data_review_view import (
    ReviewView,
    Shown,
    chat_of,
    header_of,
    progress_html,
    table_row,
)

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


def build_review_section(services: Services, dataset: gr.Dropdown) -> TabWiring:
    with gr.Accordion("Review and label", open=True):
        progress_bar = gr.HTML(elem_id="ft-review-progress")
        filters, table, bulk = _build_browser()
        editor = _build_editor()
    view = ReviewView(progress_bar, table, editor.position_label, gr.State(0), gr.State(None),
                      *editor.shown)  # fmt: skip
    view_inputs = [dataset, *filters, view.position]
    show, show_first = _wire_browsing(services, dataset, filters, view, editor)
    changes = [*_wire_bulk(services, bulk, view_inputs, view),
               *_wire_labels(services, editor, view_inputs, view)]  # fmt: skip
    return TabWiring(
        changes=tuple(changes),
        redraw=((show, view_inputs, view.outputs),),
        reopen=((show_first, view_inputs, view.outputs),),
    )


def _build_browser() -> tuple[list[Any], gr.Dataframe, dict[str, gr.Button]]:
    """The filters, the table of matching examples, and the buttons that act on all of them."""
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
        bulk = {
            "accepted": gr.Button("Accept all matching", size="sm"),
            "rejected": gr.Button("Reject all matching", size="sm"),
            "pending": gr.Button("Reset matching to pending", size="sm"),
        }
    return [status_filter, split_filter, tag_filter, search], table, bulk


@dataclass(frozen=True)
class Editor:
    """The one example shown: moving between examples, labelling and editing it."""

    prev_button: gr.Button
    next_button: gr.Button
    position_label: gr.Markdown
    labels: dict[str, gr.Button]  # new status -> its button
    save_button: gr.Button
    revert_button: gr.Button
    shown: list[Any]  # header, conversation, the five edit boxes, history (ReviewView order)


def _build_editor() -> Editor:
    with gr.Row():
        prev_button = gr.Button("← Previous (k)", elem_id="ft-prev", size="sm")
        position_label = gr.Markdown(elem_id="ft-position")
        next_button = gr.Button("Next (j) →", elem_id="ft-next", size="sm")
    header = gr.Markdown(elem_id="ft-example-header")
    conversation = gr.Chatbot(
        label="Conversation", render_markdown=False, height=320, elem_id="ft-conversation"
    )
    with gr.Row():
        labels = {
            "accepted": gr.Button("Accept (a)", variant="primary", elem_id="ft-accept"),
            "rejected": gr.Button("Reject (r)", variant="stop", elem_id="ft-reject"),
            "pending": gr.Button("Back to pending", elem_id="ft-pending"),
        }
    system_box = gr.Textbox(label="System prompt", lines=2, elem_id="ft-edit-system")
    prompt_box = gr.Textbox(label="Prompt (last user turn)", lines=4, elem_id="ft-edit-prompt")
    answer_box = gr.Textbox(label="Answer (last assistant turn)", lines=6, elem_id="ft-edit-answer")
    with gr.Row():
        tags_box = gr.Textbox(label="Tags (comma-separated)", elem_id="ft-edit-tags")
        note_box = gr.Textbox(label="Note", elem_id="ft-edit-note")
    with gr.Row():
        save_button = gr.Button("Save edits, tags and note", elem_id="ft-save")
        revert_button = gr.Button("Revert to the imported text", elem_id="ft-revert")
    with gr.Accordion("History of this example", open=False):
        history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, wrap=True)
    shown = [header, conversation, system_box, prompt_box, answer_box, tags_box, note_box, history]
    return Editor(prev_button, next_button, position_label, labels, save_button, revert_button,
                  shown)  # fmt: skip


def _render(services: Services, name: str | None, filters: Filters, at: int) -> list:
    """Everything the section shows for the example at position `at` of the filtered list."""
    if not name:
        return Shown(position_label="No dataset selected.").values()
    with services.db() as db:
        page = review.review_page(db, name, at, PAGE_SIZE, **filters.__dict__)
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
    system = current.messages[0]["content"] if current.messages[0]["role"] == "system" else ""
    return replace(
        shown, example_id=current.id, header=header_of(current), conversation=chat_of(current),
        system=system, prompt=prompt, answer=answer, tags=", ".join(current.tags),
        note=current.note,
        history=[[e["created_at"][:19], e["user_name"], e["action"], e["detail_json"][:300]]
                 for e in page.events],
    ).values()  # fmt: skip


def _wire_browsing(services: Services, dataset: gr.Dropdown, filters: list[Any],
                   view: ReviewView, editor: Editor) -> tuple:  # fmt: skip
    """Opening a dataset, filtering, picking a row, previous and next. Returns the handlers
    that redraw in place and from the first match."""

    @guarded(services, Role.ADMIN)
    def show(request: gr.Request, name: str | None, status: str | None, split: str | None,
             tag: str, text: str, at: int):  # fmt: skip
        return _render(services, name, Filters.of(status, split, tag, text), at)

    @guarded(services, Role.ADMIN)
    def show_first(request: gr.Request, name: str | None, status: str | None,
                   split: str | None, tag: str, text: str, at: int):  # fmt: skip
        return _render(services, name, Filters.of(status, split, tag, text), 0)

    @guarded(services, Role.ADMIN)
    def step(request: gr.Request, name: str | None, status: str | None, split: str | None,
             tag: str, text: str, at: int, delta: int):  # fmt: skip
        return _render(services, name, Filters.of(status, split, tag, text), at + delta)

    @guarded(services, Role.ADMIN)
    def select_row(request: gr.Request, name: str | None, status: str | None,
                   split: str | None, tag: str, text: str, at: int,
                   evt: gr.SelectData):  # fmt: skip
        page_start = (at // PAGE_SIZE) * PAGE_SIZE
        chosen = Filters.of(status, split, tag, text)
        return _render(services, name, chosen, page_start + evt.index[0])

    view_inputs, outputs = [dataset, *filters, view.position], view.outputs
    dataset.change(show_first, view_inputs, outputs, api_name="review_open")
    for box in filters:
        event = box.submit if isinstance(box, gr.Textbox) else box.change
        event(show_first, view_inputs, outputs, api_name=False)
    view.table.select(select_row, view_inputs, outputs, api_name="review_select")
    editor.prev_button.click(_stepper(step, -1), view_inputs, outputs,
                             api_name="review_previous")  # fmt: skip
    editor.next_button.click(_stepper(step, 1), view_inputs, outputs, api_name="review_next")
    return show, show_first


def _wire_bulk(services: Services, bulk: dict[str, gr.Button], view_inputs: list[Any],
               view: ReviewView) -> list[Any]:  # fmt: skip
    def bulk_with(new_status: str):
        @guarded(services, Role.ADMIN)
        def bulk_set(request: gr.Request, name: str | None, status: str | None,
                     split: str | None, tag: str, text: str, at: int):  # fmt: skip
            name = require(name, "No dataset selected.")
            selected = Filters.of(status, split, tag, text)
            with services.db() as db:
                changed = review.set_status_where(
                    db, name, new_status, current_user(services, request).name, **selected.__dict__
                )
            gr.Info(f"{changed} examples set to {new_status}.")
            return _render(services, name, selected, at)

        return bulk_set

    apis = {"accepted": "bulk_accept", "rejected": "bulk_reject", "pending": "bulk_pending"}
    return [button.click(bulk_with(status), view_inputs, view.outputs, api_name=apis[status])
            for status, button in bulk.items()]  # fmt: skip


def _wire_labels(services: Services, editor: Editor, view_inputs: list[Any],
                 view: ReviewView) -> list[Any]:  # fmt: skip
    """Accept, reject, back to pending; save the edits; revert to the imported text."""

    def label_with(new_status: str):
        @guarded(services, Role.ADMIN)
        def label(request: gr.Request, name: str | None, status: str | None, split: str | None,
                  tag: str, text: str, at: int, current_id: int | None):  # fmt: skip
            current_id = require(current_id, "No example selected.")
            with services.db() as db:
                review.set_status(
                    db, [current_id], new_status, current_user(services, request).name
                )
            chosen = Filters.of(status, split, tag, text)
            shown = _render(services, name, chosen, at)
            # Still showing the same example (it matches the filters): move on to the next.
            if shown[_EXAMPLE_ID] == current_id:
                shown = _render(services, name, chosen, at + 1)
            return shown

        return label

    @guarded(services, Role.ADMIN)
    def save(request: gr.Request, name: str | None, status: str | None, split: str | None,
             tag: str, text: str, at: int, current_id: int | None, system: str, prompt: str,
             answer: str, tags: str, note: str):  # fmt: skip
        current_id = require(current_id, "No example selected.")
        with services.db() as db:
            review.save_example(
                db, current_id, system=system, prompt=prompt, answer=answer,
                tags=review.parse_tags(tags), note=note or "",
                user=current_user(services, request).name,
                count_tokens=services.count_tokens,
            )  # fmt: skip
        gr.Info(f"Example #{current_id} saved.")
        return _render(services, name, Filters.of(status, split, tag, text), at)

    @guarded(services, Role.ADMIN)
    def revert(request: gr.Request, name: str | None, status: str | None, split: str | None,
               tag: str, text: str, at: int, current_id: int | None):  # fmt: skip
        current_id = require(current_id, "No example selected.")
        with services.db() as db:
            review.revert_example(
                db, current_id, current_user(services, request).name, services.count_tokens
            )
        return _render(services, name, Filters.of(status, split, tag, text), at)

    with_id = [*view_inputs, view.example_id]
    edits = [view.system, view.prompt, view.answer, view.tags, view.note]
    apis = {"accepted": "review_accept", "rejected": "review_reject", "pending": "review_pending"}
    events = [button.click(label_with(status), with_id, view.outputs, api_name=apis[status])
              for status, button in editor.labels.items()]  # fmt: skip
    events.append(editor.save_button.click(save, [*with_id, *edits], view.outputs,
                                           api_name="review_save"))  # fmt: skip
    events.append(editor.revert_button.click(revert, with_id, view.outputs,
                                             api_name="review_revert"))  # fmt: skip
    return events


_EXAMPLE_ID = [f.name for f in fields(Shown)].index("example_id")


def _stepper(step, delta: int):
    """A handler with the plain view signature that moves `delta` examples."""

    def move(request: gr.Request, name, status, split, tag, text, at):
        return step(request, name, status, split, tag, text, at, delta)

    move.ftapp_role = step.ftapp_role  # the guarded `step` checks the role
    return move
