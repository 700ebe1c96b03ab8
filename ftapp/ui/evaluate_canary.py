"""The Evaluate tab's canary sets (admins): prompts a team marks "must not regress", a dataset
version's split or an uploaded prompt file. Every new adapter is evaluated on each against base
by itself (runs named "canary SET ADAPTER"), and the promotion gate reads the result
(evaluation/canary.py, deploy/gate.py)."""

from __future__ import annotations

import gradio as gr

from ftapp.evaluation.canary import add_canary_set, list_canary_sets, remove_canary_set
from ftapp.records import Role
from ftapp.services import Services
from ftapp.ui.common import (
    TabWiring,
    current_user,
    escape_markdown,
    guarded,
    prompt_source,
    prompt_source_fields,
    require,
    version_labels,
)

CANARY_HEADERS = ["canary set", "prompts from", "added by", "added (UTC)"]


def build_canary_section(services: Services) -> TabWiring:
    with gr.Accordion("Canary sets: prompts that must not regress", open=False):
        gr.Markdown(
            "Every new adapter is evaluated on each canary set against the base model, by "
            "itself. Promoting an adapter that did worse than base on one (a metric whose "
            "95% interval is entirely on the worse side) needs a reason, kept in the "
            "production history."
        )
        name = gr.Textbox(label="Canary set name", elem_id="ft-c-name")
        source, version, split, upload = prompt_source_fields(
            services, "Prompts", "Prompt file", "ft-c"
        )
        with gr.Row():
            add = gr.Button("Add canary set", variant="primary", elem_id="ft-c-add")
            remove = gr.Button("Remove the named set", variant="stop", elem_id="ft-c-remove")
        message = gr.Markdown("", elem_id="ft-c-message")
        table = gr.Dataframe(headers=CANARY_HEADERS, interactive=False, elem_id="ft-c-sets")

    @guarded(services, Role.ADMIN)
    def show(request: gr.Request) -> tuple:
        with services.db() as db:
            rows = [_row(c) for c in list_canary_sets(db)]
        return rows, gr.update(choices=version_labels(services))

    @guarded(services, Role.ADMIN)
    def add_set(request: gr.Request, new_name: str, where: str, version_label: str | None,
                split_name: str, file: str | None) -> str:  # fmt: skip
        chosen = prompt_source(where, version_label, file)
        with services.db() as db:
            added = add_canary_set(
                db, services.settings, new_name, version=chosen["version"], split=split_name,
                prompt_file=chosen["prompt_file"], user=current_user(services, request).name,
            )  # fmt: skip
        services.answer_generator.wake()  # the runs of existing adapters, at once
        return f"Added canary set **{escape_markdown(added['name'])}**."

    @guarded(services, Role.ADMIN)
    def remove_set(request: gr.Request, old_name: str) -> str:
        old_name = require((old_name or "").strip(), "Name the canary set to remove.")
        with services.db() as db:
            remove_canary_set(db, old_name)
        return f"Removed canary set **{escape_markdown(old_name)}** (its runs stay)."

    outputs = [table, version]
    add.click(add_set, [name, source, version, split, upload], [message],
              api_name="canary_add").then(show, None, outputs, api_name=False)  # fmt: skip
    remove.click(remove_set, [name], [message], api_name="canary_remove").then(
        show, None, outputs, api_name=False
    )
    return TabWiring(on_load=((show, None, outputs),))


def _row(canary: dict) -> list:
    where = (f"{canary['version_label']} ({canary['split']} split)" if canary["version_label"]
             else canary["prompt_file"])  # fmt: skip
    return [canary["name"], where, canary["created_by"], canary["created_at"][:19]]
