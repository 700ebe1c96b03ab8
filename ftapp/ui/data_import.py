"""Data tab, import section: upload a file, map CSV columns, see what was rejected and why."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ftapp.auth import User
from ftapp.data.importer import ImportRejected, import_file, write_problems_jsonl
from ftapp.data.readers import csv_header, file_type_of
from ftapp.records import ImportReport, OnError, Role, SourceFormat
from ftapp.services import Services
from ftapp.store.datasets import list_datasets
from ftapp.text import plural
from ftapp.ui.common import (
    TabWiring,
    current_user,
    download_path,
    escape_markdown,
    guarded,
    require,
    to_int,
)

MAPPABLE_FIELDS = ("prompt", "completion", "system", "instruction", "input", "output")
AUTO = "(use the file's column names)"
PROBLEM_HEADERS = ["where", "reason", "text (start)"]


def build_import_section(services: Services, dataset: gr.Dropdown) -> TabWiring:
    """The import form; after an import, `dataset` is set to the dataset imported into."""
    with gr.Accordion("Import a file", open=True):
        gr.Markdown(
            "JSONL, JSON (an array), CSV or Parquet, in chat **messages**, "
            "**prompt/completion**, **Alpaca** or **ShareGPT** format (detected automatically)."
            f" Up to {services.settings.max_upload_mb} MB."
        )
        with gr.Row():
            upload = gr.File(
                label="File",
                file_types=[".jsonl", ".ndjson", ".json", ".csv", ".parquet"],
                type="filepath",
                elem_id="ft-import-file",
            )
            with gr.Column():
                dataset_name = gr.Textbox(
                    label="Dataset (new or existing)", elem_id="ft-import-dataset"
                )
                fmt = gr.Dropdown(
                    ["auto", *[f.value for f in SourceFormat]], value="auto", label="Format"
                )
                on_error = gr.Radio(
                    [e.value for e in OnError],
                    value="skip",
                    label="Bad rows",
                    info="skip: import the valid rows and list the rest; abort: import nothing",
                )
                max_tokens = gr.Number(
                    value=services.settings.max_tokens, precision=0, label="Max tokens per example"
                )
        with gr.Accordion("CSV column mapping", open=False, visible=False) as mapping_box:
            mapping = [
                gr.Dropdown([AUTO], value=AUTO, label=f"{field} column", allow_custom_value=False)
                for field in MAPPABLE_FIELDS
            ]
        import_button = gr.Button("Import", variant="primary", elem_id="ft-import-button")
        report = gr.Markdown(elem_id="ft-import-report")
        problems = gr.Dataframe(
            headers=PROBLEM_HEADERS, visible=False, wrap=True, label="Rejected rows"
        )
        rejects_file = gr.File(label="Rejected rows (JSONL)", visible=False)

    @guarded(services, Role.ADMIN)
    def show_mapping(request: gr.Request, path: str | None, name: str | None):
        is_csv = bool(path) and file_type_of(path) == "csv"
        columns = [AUTO, *csv_header(Path(path))] if is_csv else [AUTO]
        # Propose a name from the file, but never replace one the user already typed.
        proposed = (name or "").strip() or (Path(path).stem[:100] if path else "")
        return [gr.update(visible=is_csv), gr.update(value=proposed)] + [
            gr.update(choices=columns, value=AUTO) for _ in MAPPABLE_FIELDS
        ]

    upload.upload(
        show_mapping, [upload, dataset_name], [mapping_box, dataset_name, *mapping],
        api_name="import_columns",
    )  # fmt: skip

    @guarded(services, Role.ADMIN)
    def run_import(
        request: gr.Request,
        path: str | None,
        name: str,
        fmt_value: str,
        on_error_value: str,
        max_tokens_value: float,
        prompt_column: str,
        completion_column: str,
        system_column: str,
        instruction_column: str,
        input_column: str,
        output_column: str,
        progress=gr.Progress(),
    ):
        path = require(path, "Choose a file to import first.")
        columns = (prompt_column, completion_column, system_column, instruction_column,
                   input_column, output_column)  # fmt: skip
        column_map = {
            field: column
            for field, column in zip(MAPPABLE_FIELDS, columns, strict=True)
            if column and column != AUTO
        }
        user = current_user(services, request)
        with services.db() as db:
            try:
                result = import_file(
                    db,
                    path,
                    name,
                    count_tokens=services.count_tokens,
                    max_tokens=to_int(max_tokens_value, "max tokens", minimum=1),
                    fmt=fmt_value,
                    on_error=on_error_value,
                    column_map=column_map or None,
                    max_bytes=services.max_upload_bytes,
                    user=user.name,
                    progress=lambda fraction, message: progress(fraction, desc=message),
                )
            except ImportRejected as exc:
                message = escape_markdown(str(exc))
                return _report_outputs(user, exc.report, f"**Import failed.** {message}")
        # File names and row fields are user text: shown literally, not as Markdown or HTML.
        return _report_outputs(user, result, f"**{escape_markdown(result.summary())}.**")

    imported = import_button.click(
        run_import,
        [upload, dataset_name, fmt, on_error, max_tokens, *mapping],
        [report, problems, rejects_file],
        api_name="import_file",
    )

    @guarded(services, Role.ADMIN)
    def select_imported(request: gr.Request, name: str, current: str | None):
        names = dataset_names(services)
        name = (name or "").strip()
        # A failed import into a new name keeps the dataset being reviewed.
        selected = name if name in names else current if current in names else None
        return gr.update(choices=names, value=selected)

    selected = imported.then(select_imported, [dataset_name, dataset], [dataset], api_name=False)
    return TabWiring(changes=(selected,))


def dataset_names(services: Services) -> list[str]:
    with services.db() as db:
        return [row["name"] for row in list_datasets(db)]


def _report_outputs(user: User, report: ImportReport, headline: str):
    rows = [[p.location, p.reason, p.raw[:200]] for p in report.problems + report.duplicates]
    file_update = gr.update(visible=False, value=None)
    if report.problems:
        out = download_path(user, f"{Path(report.file_name).stem}-rejected.jsonl")
        file_update = gr.update(visible=True, value=str(write_problems_jsonl(report.problems, out)))
    details = []
    if report.problems:
        details.append(f"{plural(report.n_rejected, 'rejected row')} (listed below, downloadable)")
    if report.duplicates:
        details.append(f"{plural(report.n_duplicates, 'exact duplicate')} skipped")
    text = headline + ("\n\n" + "; ".join(details) if details else "")
    return text, gr.update(value=rows, visible=bool(rows)), file_update
