"""Data tab, review section: the one example shown, and what can be done to it: accept, reject,
back to pending; edit the text (a pair's rejected answer too), tags and note; revert to the
imported text; swap a pair's chosen and rejected answers (keyboard: s); label an unpaired
row's answer good or bad."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import gradio as gr

from ftapp.data import review
from ftapp.records import Role
from ftapp.services import Services
from ftapp.ui.common import current_user, guarded, require
from ftapp.ui.data_review_view import Filters, ReviewView, Shown, render

HISTORY_HEADERS = ["when", "who", "action", "detail"]


@dataclass(frozen=True)
class Editor:
    """The one example shown: moving between examples, labelling and editing it."""

    prev_button: gr.Button
    next_button: gr.Button
    position_label: gr.Markdown
    labels: dict[str, gr.Button]  # new status -> its button
    swap_button: gr.Button
    good_bad: dict[bool, gr.Button]  # an unpaired row's label (True: good) -> its button
    save_button: gr.Button
    revert_button: gr.Button
    shown: list[Any]  # from the header to the history, in ReviewView order


def build_editor() -> Editor:
    with gr.Row():
        prev_button = gr.Button("← Previous (k)", elem_id="ft-prev", size="sm")
        position_label = gr.Markdown(elem_id="ft-position")
        next_button = gr.Button("Next (j) →", elem_id="ft-next", size="sm")
    header = gr.Markdown(elem_id="ft-example-header")
    conversation = gr.Chatbot(
        label="Conversation", render_markdown=False, height=320, elem_id="ft-conversation"
    )
    answers = gr.HTML(elem_id="ft-answers")
    with gr.Row():
        labels = {
            "accepted": gr.Button("Accept (a)", variant="primary", elem_id="ft-accept"),
            "rejected": gr.Button("Reject (r)", variant="stop", elem_id="ft-reject"),
            "pending": gr.Button("Back to pending", elem_id="ft-pending"),
        }
    with gr.Row(visible=False) as pair_tools:
        swap_button = gr.Button("Swap chosen and rejected (s)", elem_id="ft-swap")
    with gr.Row(visible=False) as label_tools:
        good_bad = {
            True: gr.Button("Label the answer good", elem_id="ft-label-good"),
            False: gr.Button("Label the answer bad", elem_id="ft-label-bad"),
        }
    system_box = gr.Textbox(label="System prompt", lines=2, elem_id="ft-edit-system")
    prompt_box = gr.Textbox(label="Prompt (last user turn)", lines=4, elem_id="ft-edit-prompt")
    with gr.Row():
        answer_box = gr.Textbox(label="Answer (last assistant turn; of a pair, the chosen one)",
                                lines=6, elem_id="ft-edit-answer")  # fmt: skip
        with gr.Column(visible=False) as rejected_column:
            rejected_box = gr.Textbox(label="Rejected answer (last assistant turn)", lines=6,
                                      elem_id="ft-edit-rejected")  # fmt: skip
    with gr.Row():
        tags_box = gr.Textbox(label="Tags (comma-separated)", elem_id="ft-edit-tags")
        note_box = gr.Textbox(label="Note", elem_id="ft-edit-note")
    with gr.Row():
        save_button = gr.Button("Save edits, tags and note", elem_id="ft-save")
        revert_button = gr.Button("Revert to the imported text", elem_id="ft-revert")
    with gr.Accordion("History of this example", open=False):
        history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, wrap=True)
    shown = [header, conversation, answers, pair_tools, label_tools, system_box, prompt_box,
             answer_box, rejected_column, rejected_box, tags_box, note_box, history]  # fmt: skip
    return Editor(prev_button, next_button, position_label, labels, swap_button, good_bad,
                  save_button, revert_button, shown)  # fmt: skip


def wire_editor(services: Services, editor: Editor, view_inputs: list[Any],
                view: ReviewView) -> list[Any]:  # fmt: skip
    """Accept, reject, back to pending; save the edits; revert to the imported text; swap a
    pair's answers; label an unpaired answer. Returns the events that change examples."""

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
            shown = render(services, name, chosen, at)
            # Still showing the same example (it matches the filters): move on to the next.
            if shown[_EXAMPLE_ID] == current_id:
                shown = render(services, name, chosen, at + 1)
            return shown

        return label

    @guarded(services, Role.ADMIN)
    def save(request: gr.Request, name: str | None, status: str | None, split: str | None,
             tag: str, text: str, at: int, current_id: int | None, system: str, prompt: str,
             answer: str, tags: str, note: str, rejected: str | None = None):  # fmt: skip
        current_id = require(current_id, "No example selected.")
        with services.db() as db:
            review.save_example(
                db, current_id, system=system, prompt=prompt, answer=answer,
                tags=review.parse_tags(tags), note=note or "",
                user=current_user(services, request).name,
                count_tokens=services.count_tokens, rejected=rejected,
            )  # fmt: skip
        gr.Info(f"Example #{current_id} saved.")
        return render(services, name, Filters.of(status, split, tag, text), at)

    @guarded(services, Role.ADMIN)
    def revert(request: gr.Request, name: str | None, status: str | None, split: str | None,
               tag: str, text: str, at: int, current_id: int | None):  # fmt: skip
        current_id = require(current_id, "No example selected.")
        with services.db() as db:
            review.revert_example(
                db, current_id, current_user(services, request).name, services.count_tokens
            )
        return render(services, name, Filters.of(status, split, tag, text), at)

    @guarded(services, Role.ADMIN)
    def swap(request: gr.Request, name: str | None, status: str | None, split: str | None,
             tag: str, text: str, at: int, current_id: int | None):  # fmt: skip
        current_id = require(current_id, "No example selected.")
        with services.db() as db:
            review.swap_answers(db, current_id, current_user(services, request).name)
        gr.Info(f"Example #{current_id}: chosen and rejected swapped.")
        return render(services, name, Filters.of(status, split, tag, text), at)

    def good_bad_with(is_good: bool):
        @guarded(services, Role.ADMIN)
        def set_label(request: gr.Request, name: str | None, status: str | None,
                      split: str | None, tag: str, text: str, at: int,
                      current_id: int | None):  # fmt: skip
            current_id = require(current_id, "No example selected.")
            with services.db() as db:
                review.set_label(db, current_id, is_good, current_user(services, request).name)
            return render(services, name, Filters.of(status, split, tag, text), at)

        return set_label

    with_id = [*view_inputs, view.example_id]
    # The rejected answer comes last (and has a default), so a caller of the form before it
    # still fits.
    edits = [view.system, view.prompt, view.answer, view.tags, view.note, view.rejected]
    apis = {"accepted": "review_accept", "rejected": "review_reject", "pending": "review_pending"}
    events = [button.click(label_with(status), with_id, view.outputs, api_name=apis[status])
              for status, button in editor.labels.items()]  # fmt: skip
    events.append(editor.save_button.click(save, [*with_id, *edits], view.outputs,
                                           api_name="review_save"))  # fmt: skip
    events.append(editor.revert_button.click(revert, with_id, view.outputs,
                                             api_name="review_revert"))  # fmt: skip
    events.append(editor.swap_button.click(swap, with_id, view.outputs, api_name="review_swap"))
    events += [button.click(good_bad_with(is_good), with_id, view.outputs,
                            api_name="review_label_good" if is_good else "review_label_bad")
               for is_good, button in editor.good_bad.items()]  # fmt: skip
    return events


_EXAMPLE_ID = [f.name for f in fields(Shown)].index("example_id")
