"""The Evaluate tab's report section: a verdict per contestant against the baseline, then a
run's every metric with its 95% interval and the difference to the baseline, a plot (metrics
that are zero for everyone left out), the examples that gained and lost the most, any example
side by side with its reference, and the results as CSV or JSONL."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ftapp.evaluation.report import RunReport, build_report, example_detail, write_results
from ftapp.records import Role
from ftapp.services import Services
from ftapp.ui.common import current_user, download_path, escape_markdown, guarded, require, to_int

REPORT_HEADERS = ["metric", "contestant", "mean", "95% low", "95% high", "n", "vs baseline",
                  "diff low", "diff high", "verdict"]  # fmt: skip


@dataclass(frozen=True)
class ReportView:
    outputs: list[Any]  # what `render_report` fills, in its order


def render_report(services: Services, run_name: str) -> tuple:
    """The report section's outputs for a run (call it from a guarded handler)."""
    with services.db() as db:
        return _render(build_report(db, run_name))


def build_report_section(services: Services, chosen: gr.Dropdown, show: gr.Button) -> ReportView:
    """The report of the run picked in `chosen`, drawn when `show` is clicked (the runs
    section also draws it by itself once the run is done)."""
    gr.Markdown("### Report")
    summary = gr.Markdown("", elem_id="ft-e-summary")
    table = gr.Dataframe(headers=REPORT_HEADERS, interactive=False, wrap=True,
                         elem_id="ft-e-report")  # fmt: skip
    plot = gr.Plot(label="Means with 95% intervals")
    extremes = gr.Markdown("", elem_id="ft-e-extremes")
    with gr.Row():
        position = gr.Number(value=1, precision=0, minimum=1, label="Example", scale=1,
                             elem_id="ft-e-position")  # fmt: skip
        show_example = gr.Button("Show example side by side", scale=1, elem_id="ft-e-example")
    example_view = gr.HTML("", elem_id="ft-e-example-view")
    with gr.Row():
        csv_button = gr.Button("Results (CSV)")
        jsonl_button = gr.Button("Results (JSONL)")
    exported = gr.File(label="Download", elem_id="ft-e-download")

    @guarded(services, Role.ADMIN)
    def report(request: gr.Request, run_name: str | None):
        return render_report(services, require(run_name, "choose a run first"))

    @guarded(services, Role.ADMIN)
    def example(request: gr.Request, run_name: str | None, number: Any) -> str:
        run_name = require(run_name, "choose a run first")
        with services.db() as db:
            detail = example_detail(db, run_name, to_int(number, "example", minimum=1))
        return _example_html(detail)

    show.click(report, [chosen], [summary, table, plot, extremes], api_name="eval_report")
    show_example.click(example, [chosen, position], [example_view], api_name="eval_example")
    csv_button.click(_exporter(services, "csv"), [chosen], [exported],
                     api_name="eval_export_csv")  # fmt: skip
    jsonl_button.click(_exporter(services, "jsonl"), [chosen], [exported],
                       api_name="eval_export_jsonl")  # fmt: skip
    return ReportView([summary, table, plot, extremes])


def _exporter(services: Services, fmt: str):
    @guarded(services, Role.ADMIN)
    def export(request: gr.Request, run_name: str | None) -> str:
        run_name = require(run_name, "choose a run first")
        out = download_path(
            current_user(services, request), f"{_check_name(run_name)}-results.{fmt}"
        )
        with services.db() as db:
            write_results(db, run_name, out, fmt)
        return str(out)

    return export


def _check_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:40] or "check"


def _render(report: RunReport) -> tuple:
    run = report.run
    baseline = escape_markdown(run.baseline.name)
    verdicts = [f"- **{escape_markdown(name)}** against {baseline}: {escape_markdown(text)}"
                for name, text in report.verdicts().items()]  # fmt: skip
    lines = ["\n".join(verdicts),
             f"**{escape_markdown(run.name)}** ({run.status}): {escape_markdown(run.source)}; "
             f"baseline **{baseline}**."]  # fmt: skip
    if run.error:
        lines.append(f"Note: {escape_markdown(run.error)}")
    failed = [f"{escape_markdown(k)} {v}" for k, v in report.failed.items() if v]
    if failed:
        lines.append("Answers that could not be generated: " + ", ".join(failed))
    for row in report.rows:
        if row.chance and row.value.mean is not None:
            lines.append(f"- {escape_markdown(row.contestant)}: {row.label} "
                         f"{row.value.mean:.2f}, **{row.chance}** (0.5)")  # fmt: skip
    rows = [[r.metric, r.contestant, _round(r.value.mean), _round(r.value.low),
             _round(r.value.high), r.value.n,
             _round(r.vs_baseline.mean) if r.vs_baseline else None,
             _round(r.vs_baseline.low) if r.vs_baseline else None,
             _round(r.vs_baseline.high) if r.vs_baseline else None,
             "; ".join(v for v in (r.verdict, r.chance) if v)]
            for r in report.rows]  # fmt: skip
    return "\n\n".join(lines), rows, _plot(report), _extremes(report)


def _extremes(report: RunReport) -> str:
    if not report.key_metric:
        return ""
    parts = [f"#### Examples that moved most on {escape_markdown(report.key_metric)}"]
    for contestant in report.best:
        for title, deltas in (("gained", report.best[contestant]),
                              ("lost", report.worst[contestant])):  # fmt: skip
            parts.append(f"**{escape_markdown(contestant)}, {title} most against the baseline**")
            lines = [f"- example {d.position}: {d.value:.3g} vs {d.baseline_value:.3g}: "
                     f"{escape_markdown(_short(d.prompt))}" for d in deltas]  # fmt: skip
            parts += lines or ["- none"]
    return "\n\n".join(parts)


def _example_html(detail: dict[str, Any]) -> str:
    """Every answer to one example in columns, beside the prompt and the reference; all text
    escaped (model output is never run as HTML)."""
    prompt = "".join(f"<p><b>{html.escape(m['role'])}</b>: {html.escape(m['content'])}</p>"
                     for m in detail["messages"])  # fmt: skip
    reference = html.escape(detail["reference"] or "(no reference)")
    columns = []
    for answer in detail["answers"]:
        scores = ", ".join(f"{html.escape(k)} {_round(v)}" for k, v in answer["scores"].items()
                           if v is not None)  # fmt: skip
        notes = "; ".join(f"{html.escape(k)}: {html.escape(v)}"
                          for k, v in (answer["details"] or {}).items())  # fmt: skip
        text = html.escape(answer["answer"] or answer["error"] or "")
        columns.append(
            f"<div style='flex:1;min-width:220px'><h4>{html.escape(answer['contestant'])}</h4>"
            f"<pre style='white-space:pre-wrap'>{text}</pre><small>{scores}"
            f"{'<br>' + notes if notes else ''}</small></div>"
        )
    return (f"<div><h4>Example {detail['position']}</h4>{prompt}<p><b>Reference</b>: "
            f"{reference}</p><div style='display:flex;gap:1em'>{''.join(columns)}</div>"
            "</div>")  # fmt: skip


def _plot(report: RunReport):
    """One panel per metric: each contestant's mean with its 95% interval."""
    from matplotlib.figure import Figure

    # A metric that is zero for every contestant (exact match on free text, say) has nothing
    # to show: its panel would be empty bars.
    shown = [m for m in report.metrics if m != "judge" and any(
        r.value.mean for r in report.rows if r.metric == m)][:8]  # fmt: skip
    if not shown:
        return None
    figure = Figure(figsize=(10, 2.2 * ((len(shown) + 1) // 2)))
    for index, metric in enumerate(shown, 1):
        axes = figure.add_subplot((len(shown) + 1) // 2, 2, index)
        rows = [r for r in report.rows if r.metric == metric and r.value.mean is not None]
        means = [r.value.mean for r in rows]
        lower = [r.value.mean - (r.value.low if r.value.low is not None else r.value.mean)
                 for r in rows]  # fmt: skip
        upper = [(r.value.high if r.value.high is not None else r.value.mean) - r.value.mean
                 for r in rows]  # fmt: skip
        axes.barh([r.contestant for r in rows], means, xerr=[lower, upper], capsize=4)
        axes.set_title(rows[0].label if rows else metric, fontsize=9)
        axes.invert_yaxis()
    figure.tight_layout()
    return figure


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
