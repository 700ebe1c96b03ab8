"""The Data tab: pick or create a dataset, import files, review and label, split, freeze and
export. Each part lives in its own module; this one lays them out and links them."""

from __future__ import annotations

import gradio as gr

from ftapp.records import Role
from ftapp.services import Services
from ftapp.store.datasets import list_datasets
from ftapp.ui.common import guarded
from ftapp.ui.data_import import build_import_section
from ftapp.ui.data_review import build_review_section
from ftapp.ui.data_versions import build_versions_section


def build_data_tab(services: Services) -> None:
    with gr.Row():
        dataset = gr.Dropdown(
            choices=_dataset_names(services), label="Dataset", scale=4, elem_id="ft-dataset"
        )
        refresh = gr.Button("↻ Refresh", scale=1, size="sm")
    imported = build_import_section(services)
    review = build_review_section(services, dataset)
    versions = build_versions_section(services, dataset)

    @guarded(Role.ADMIN)
    def reload_names(current: str | None, request: gr.Request):
        names = _dataset_names(services)
        return gr.update(choices=names, value=current if current in names else None)

    @guarded(Role.ADMIN)
    def select_imported(name: str, request: gr.Request):
        names = _dataset_names(services)
        return gr.update(choices=names, value=name.strip() if name.strip() in names else None)

    refresh.click(reload_names, [dataset], [dataset], api_name="list_datasets")
    # After an import, show the dataset it went into (its change event refreshes the rest).
    imported["import_button"].click(
        select_imported, [imported["dataset_name"]], [dataset], api_name=False
    )
    # Splits change the review table's split column; re-render it after them.
    handler, inputs, outputs = review["refresh"]
    for event in versions["events"]:
        event.click(handler, inputs, outputs, api_name=False)


def _dataset_names(services: Services) -> list[str]:
    with services.db() as db:
        return [row["name"] for row in list_datasets(db)]
