"""The Data tab: pick or create a dataset, import files, review and label, split, freeze and
export. Each part lives in its own module; this one lays them out and links them."""

from __future__ import annotations

import gradio as gr

from ftapp.records import Role
from ftapp.services import Services
from ftapp.store.datasets import list_datasets
from ftapp.ui.common import guarded, role_gate
from ftapp.ui.data_import import build_import_section
from ftapp.ui.data_review import build_review_section
from ftapp.ui.data_versions import build_versions_section


def build_data_tab(services: Services) -> None:
    with gr.Row():
        # Empty until the page loads: choices built into the page are in /config and
        # /gradio_api/info for every signed-in user; the load below fills them for admins only.
        dataset = gr.Dropdown(
            choices=[],
            label="Dataset",
            scale=4,
            elem_id="ft-dataset",
            allow_custom_value=True,  # API clients may name any dataset; the core checks it
        )
        refresh = gr.Button("↻ Refresh", scale=1, size="sm")
    imported = build_import_section(services)
    review = build_review_section(services, dataset)
    versions = build_versions_section(services, dataset)

    @guarded(services, Role.ADMIN)
    def reload_names(current: str | None, request: gr.Request):
        names = _dataset_names(services)
        return gr.update(choices=names, value=current if current in names else None)

    @guarded(services, Role.ADMIN)
    def load_names(request: gr.Request):
        return gr.update(choices=_dataset_names(services), value=None)

    @guarded(services, Role.ADMIN)
    def select_imported(name: str, current: str | None, request: gr.Request):
        names = _dataset_names(services)
        name = (name or "").strip()
        # A failed import into a new name keeps the dataset being reviewed.
        selected = name if name in names else current if current in names else None
        return gr.update(choices=names, value=selected)

    refresh.click(reload_names, [dataset], [dataset], api_name="list_datasets")
    # On page load (no triggers, no inputs): list the datasets as they are now, not as they
    # were when the app started and built the page. Every page loads this, so admins only:
    # the gate stops it silently for a reviewer (the refusal would pop up on their screen).
    gr.on(None, role_gate(services, Role.ADMIN), None, None, api_name=False).success(
        load_names, None, [dataset], api_name=False
    )
    # Each refresh is chained with .then, so it reads what the change before it wrote.
    # After an import, select the dataset it went into; its change event refreshes the rest,
    # but an import into the dataset already selected changes no value, so refresh it here.
    review_first, review_inputs, review_outputs = review["refresh_first"]
    versions_show, versions_inputs, versions_outputs = versions["refresh"]
    imported["imported"].then(
        select_imported, [imported["dataset_name"], dataset], [dataset], api_name=False
    ).then(review_first, review_inputs, review_outputs, api_name=False).then(
        versions_show, versions_inputs, versions_outputs, api_name=False
    )
    # Review changes move the counts in the statistics.
    stats_show, stats_inputs, stats_outputs = versions["refresh_stats"]
    for event in review["events"]:
        event.then(stats_show, stats_inputs, stats_outputs, api_name=False)
    # Splits change the review table's split column.
    review_show = review["refresh"][0]
    for event in versions["events"]:
        event.then(review_show, review_inputs, review_outputs, api_name=False)


def _dataset_names(services: Services) -> list[str]:
    with services.db() as db:
        return [row["name"] for row in list_datasets(db)]
