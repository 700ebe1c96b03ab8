"""Data tab, prepare section: splits, statistics (token-length histogram), frozen versions,
and export."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ftapp.data.export import EXPORT_FORMATS, export_dataset
from ftapp.data.splits import assign_splits
from ftapp.data.stats import dataset_stats, preference_line, token_histogram, token_lengths
from ftapp.data.versions import freeze_version
from ftapp.records import Role
from ftapp.services import Services
from ftapp.ui.common import (
    TabWiring,
    current_user,
    download_path,
    escape_markdown,
    guarded,
    require,
    to_int,
)

CURRENT = "accepted examples now"
VERSION_HEADERS = ["version", "examples", "train", "validation", "test", "hash", "frozen at", "by"]


def build_versions_section(services: Services, dataset: gr.Dropdown) -> TabWiring:
    with gr.Accordion("Split, statistics, versions, export", open=True):
        with gr.Row():
            train_ratio = gr.Number(value=0.8, label="Train", minimum=0)
            validation_ratio = gr.Number(value=0.1, label="Validation", minimum=0)
            test_ratio = gr.Number(value=0.1, label="Test", minimum=0)
            seed = gr.Number(value=0, precision=0, label="Seed")
            split_button = gr.Button("Assign splits", elem_id="ft-split")
        with gr.Row():
            counts = gr.Markdown(elem_id="ft-stats")
            histogram = gr.BarPlot(
                x="range", y="examples", title="Token lengths", x_label_angle=-45, sort=None,
            )  # fmt: skip
        with gr.Row():
            note = gr.Textbox(label="Version note", scale=3)
            freeze_button = gr.Button("Freeze a version", variant="primary", elem_id="ft-freeze")
        versions = gr.Dataframe(headers=VERSION_HEADERS, interactive=False, label="Versions")
        with gr.Row():
            export_version = gr.Dropdown([CURRENT], value=CURRENT, label="Export what")
            export_format = gr.Radio(list(EXPORT_FORMATS), value="messages", label="Format")
            export_split = gr.Dropdown(["all", "train", "validation", "test"], value="all",
                                       label="Split")  # fmt: skip
            export_button = gr.Button("Export JSONL", elem_id="ft-export")
        export_file = gr.File(label="Download", visible=False)

    def render(name: str | None) -> list:
        if not name:
            return ["", None, [], gr.update(choices=[CURRENT], value=CURRENT)]
        with services.db() as db:
            stats = dataset_stats(db, name)
            lengths = token_lengths(db, name)
        bins = pd.DataFrame(token_histogram(lengths), columns=["range", "low", "high", "examples"])
        version_rows = [
            [f"v{v['version']}", v["n_examples"], v["n_train"], v["n_validation"], v["n_test"],
             v["content_hash"][:12], v["created_at"][:19], v["created_by"]]
            for v in stats["versions"]
        ]  # fmt: skip
        choices = [CURRENT] + [f"v{v['version']}" for v in reversed(stats["versions"])]
        return [_stats_markdown(stats), bins, version_rows,
                gr.update(choices=choices, value=CURRENT)]  # fmt: skip

    outputs = [counts, histogram, versions, export_version]

    @guarded(services, Role.ADMIN)
    def show(request: gr.Request, name: str | None):
        return render(name)

    @guarded(services, Role.ADMIN)
    def split(request: gr.Request, name: str | None, train: float | None,
              validation: float | None, test: float | None, seed_value: int | None):  # fmt: skip
        name = require(name, "No dataset selected.")
        with services.db() as db:
            result = assign_splits(db, name, [train, validation, test], to_int(seed_value, "seed"))
        gr.Info("Splits assigned: " + ", ".join(f"{k} {v}" for k, v in result.items()))
        asked = dict(zip(result, (train, validation, test), strict=True))
        empty = [split for split, count in result.items() if count == 0 and (asked[split] or 0) > 0]
        if empty:
            gr.Warning(f"Too few examples: the {' and '.join(empty)} split got none.")
        return render(name)

    @guarded(services, Role.ADMIN)
    def freeze(request: gr.Request, name: str | None, note_text: str):
        name = require(name, "No dataset selected.")
        with services.db() as db:
            version, created = freeze_version(
                db, name, current_user(services, request).name, note_text
            )
        if created:
            gr.Info(f"Frozen {version.label}: {version.n_examples} examples.")
        else:
            gr.Info(f"Nothing changed since {version.label}; no new version.")
        return render(name)

    @guarded(services, Role.ADMIN)
    def export(request: gr.Request, name: str | None, which: str | None, fmt: str | None,
               split_name: str | None):  # fmt: skip
        name = require(name, "No dataset selected.")
        version = None if which == CURRENT else which
        suffix = f"-{which}" if version else ""
        suffix += f"-{split_name}" if split_name != "all" else ""
        out = download_path(current_user(services, request), f"{name}{suffix}-{fmt}.jsonl")
        with services.db() as db:
            count = export_dataset(
                db, name, out, fmt=fmt, version=version,
                split=None if split_name == "all" else split_name,
            )  # fmt: skip
        gr.Info(f"Exported {count} examples.")
        return gr.update(value=str(out), visible=True)

    @guarded(services, Role.ADMIN)
    def show_stats(request: gr.Request, name: str | None):
        return render(name)[:2]

    dataset.change(show, [dataset], outputs, api_name="dataset_stats")
    split_event = split_button.click(
        split, [dataset, train_ratio, validation_ratio, test_ratio, seed], outputs,
        api_name="assign_splits",
    )  # fmt: skip
    freeze_event = freeze_button.click(freeze, [dataset, note], outputs, api_name="freeze_version")
    export_button.click(
        export, [dataset, export_version, export_format, export_split], [export_file],
        api_name="export_dataset",
    )  # fmt: skip
    return TabWiring(
        changes=(split_event, freeze_event),
        # Counts and token lengths only: keeps the chosen export version.
        redraw=((show_stats, [dataset], [counts, histogram]),),
        reopen=((show, [dataset], outputs),),
    )


def _stats_markdown(stats: dict) -> str:
    status, split = stats["by_status"], stats["by_split"]
    tags = ", ".join(f"{tag} ({n})" for tag, n in list(stats["by_tag"].items())[:15]) or "none"
    tokens = stats["tokens"]
    token_line = (
        f"min {tokens['min']}, median {tokens['median']:.0f}, p95 {tokens['p95']:.0f}, "
        f"max {tokens['max']}"
        if tokens
        else "no examples"
    )
    pairs = preference_line(stats)  # empty for an SFT dataset
    return (
        f"| | count |\n|---|---|\n"
        f"| accepted / pending / rejected | {status['accepted']} / {status['pending']} / "
        f"{status['rejected']} |\n"
        f"| train / validation / test / no split | {split['train']} / {split['validation']} / "
        f"{split['test']} / {split['none']} |\n"
        f"| rejected rows at import | {stats['rejected_rows']} |\n"
        f"| duplicates skipped | {stats['duplicates']} |\n"
        f"| tokens per example | {token_line} |\n"
        + (f"| preference data | {pairs} |\n" if pairs else "")
        + f"\n**Tags:** {escape_markdown(tags)}"
    )
