"""The Data tab: pick or create a dataset, import files, review and label, split, freeze and
export. Each part lives in its own module; this one lays them out and links them."""

from __future__ import annotations

import gradio as gr

from ftapp.records import Role
from ftapp.services import Services
from ftapp.store.datasets import list_datasets
from ftapp.ui.common import TabWiring, guarded
from ftapp.ui.data_import import build_import_section, dataset_names
from ftapp.ui.data_review import build_review_section
from ftapp.ui.data_versions import build_versions_section


def build_data_tab(services: Services) -> TabWiring:
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
    imported = build_import_section(services, dataset)
    review = build_review_section(services, dataset)
    versions = build_versions_section(services, dataset)

    @guarded(services, Role.ADMIN)
    def reload_names(request: gr.Request, current: str | None):
        names = dataset_names(services)
        return gr.update(choices=names, value=current if current in names else None)

    # The dataset this browser had open, so a reload (or tomorrow) reopens it rather than
    # an empty page saying "No dataset selected" (kept in the browser's localStorage).
    last_opened = gr.BrowserState(None, storage_key="ftapp-dataset")

    @guarded(services, Role.ADMIN)
    def load_names(request: gr.Request, remembered: str | None):
        """Every dataset; the one this browser had open, else the newest one, is opened."""
        with services.db() as db:
            rows = list_datasets(db)
        names = [row["name"] for row in rows]
        newest = max(rows, key=lambda row: row["created_at"])["name"] if rows else None
        return gr.update(choices=names, value=remembered if remembered in names else newest)

    @guarded(services, Role.ADMIN)
    def remember(request: gr.Request, name: str | None) -> str | None:
        return name

    refresh.click(reload_names, [dataset], [dataset], api_name="list_datasets")
    dataset.change(remember, [dataset], [last_opened], api_name=False)
    # Each redraw is chained with .then, so it reads what the change before it wrote. After an
    # import (the dataset it went into is selected by then), redraw from the top: an import
    # into the dataset already selected changes no value, so no change event does it.
    _redraw_after(imported.changes, review.reopen + versions.reopen)
    # Review changes move the counts in the statistics; splits change the review's split column.
    _redraw_after(review.changes, versions.redraw)
    _redraw_after(versions.changes, review.redraw)
    # On page load: the datasets as they are now, not as they were when the app started and
    # built the page.
    return TabWiring(on_load=((load_names, [last_opened], [dataset]),))


def _redraw_after(events: tuple, redraws: tuple) -> None:
    for event in events:
        for handler, inputs, outputs in redraws:
            event = event.then(handler, inputs, outputs, api_name=False)
