"""Data tab, review section: browse a dataset page by page with filters, and act on all the
matching examples at once; one example at a time is labelled and edited in data_review_edit.py
(keyboard: a accept, r reject, s swap a pair's answers, j/→ next, k/← previous)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ftapp.data import review
from ftapp.records import Role
from ftapp.services import Services
from ftapp.ui.common import TabWiring, current_user, guarded, require
from ftapp.ui.data_review_edit import Editor, build_editor, wire_editor
from ftapp.ui.data_review_view import ALL, PAGE_SIZE, Filters, ReviewView, render

TABLE_HEADERS = ["", "id", "status", "split", "tags", "tokens", "prompt", "answer"]


def build_review_section(services: Services, dataset: gr.Dropdown) -> TabWiring:
    with gr.Accordion("Review and label", open=True):
        progress_bar = gr.HTML(elem_id="ft-review-progress")
        filters, table, bulk = _build_browser()
        editor = build_editor()
    view = ReviewView(progress_bar, table, editor.position_label, gr.State(0), gr.State(None),
                      *editor.shown)  # fmt: skip
    view_inputs = [dataset, *filters, view.position]
    show, show_first = _wire_browsing(services, dataset, filters, view, editor)
    changes = [*_wire_bulk(services, bulk, view_inputs, view),
               *wire_editor(services, editor, view_inputs, view)]  # fmt: skip
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


def _wire_browsing(services: Services, dataset: gr.Dropdown, filters: list[Any],
                   view: ReviewView, editor: Editor) -> tuple:  # fmt: skip
    """Opening a dataset, filtering, picking a row, previous and next. Returns the handlers
    that redraw in place and from the first match."""

    @guarded(services, Role.ADMIN)
    def show(request: gr.Request, name: str | None, status: str | None, split: str | None,
             tag: str, text: str, at: int):  # fmt: skip
        return render(services, name, Filters.of(status, split, tag, text), at)

    @guarded(services, Role.ADMIN)
    def show_first(request: gr.Request, name: str | None, status: str | None,
                   split: str | None, tag: str, text: str, at: int):  # fmt: skip
        return render(services, name, Filters.of(status, split, tag, text), 0)

    @guarded(services, Role.ADMIN)
    def step(request: gr.Request, name: str | None, status: str | None, split: str | None,
             tag: str, text: str, at: int, delta: int):  # fmt: skip
        return render(services, name, Filters.of(status, split, tag, text), at + delta)

    @guarded(services, Role.ADMIN)
    def select_row(request: gr.Request, name: str | None, status: str | None,
                   split: str | None, tag: str, text: str, at: int,
                   evt: gr.SelectData):  # fmt: skip
        page_start = (at // PAGE_SIZE) * PAGE_SIZE
        chosen = Filters.of(status, split, tag, text)
        return render(services, name, chosen, page_start + evt.index[0])

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
            return render(services, name, selected, at)

        return bulk_set

    apis = {"accepted": "bulk_accept", "rejected": "bulk_reject", "pending": "bulk_pending"}
    return [button.click(bulk_with(status), view_inputs, view.outputs, api_name=apis[status])
            for status, button in bulk.items()]  # fmt: skip


def _stepper(step, delta: int):
    """A handler with the plain view signature that moves `delta` examples."""

    def move(request: gr.Request, name, status, split, tag, text, at):
        return step(request, name, status, split, tag, text, at, delta)

    move.ftapp_role = step.ftapp_role  # the guarded `step` checks the role
    return move
