"""The Evaluate tab (admins): automatic evaluation on held-out examples. Create a run (the
examples, the contestants with the baseline first, metrics, checks, an optional judge model),
watch its answers being generated and scored, then read its report: every metric with its
95% interval and the difference to the baseline, a plot, the examples that gained and lost
the most, any example side by side with its reference, and the results as CSV or JSONL."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import gradio as gr

from ftapp.errors import ValidationError
from ftapp.evaluation.checks import CODE_CHECKS_OFF, READY_CHECKS, check_specs
from ftapp.evaluation.metrics import DEFAULT_METRICS, TEXT_METRICS
from ftapp.evaluation.report import RunReport, build_report, example_detail, write_results
from ftapp.evaluation.runs import (
    DEFAULT_SAMPLING,
    RunSummary,
    cancel_run,
    create_run,
    keep_check_file,
    retry_run,
    run_summaries,
)
from ftapp.records import Role
from ftapp.services import Services
from ftapp.serving.backend import MAX_NEW_TOKENS, Sampling
from ftapp.ui.common import (
    FROM_FILE,
    contestant_names,
    current_user,
    download_path,
    escape_markdown,
    fresh_choices_on_focus,
    guarded,
    load_prompts,
    prompt_source_fields,
    to_int,
    version_labels,
)

POLL_SECONDS = 2.0
RUN_HEADERS = ["run", "status", "answers", "failed", "contestants", "examples from", "note"]
REPORT_HEADERS = ["metric", "contestant", "mean", "95% low", "95% high", "n", "vs baseline",
                  "diff low", "diff high", "verdict"]  # fmt: skip


def build_evaluate_tab(services: Services) -> dict[str, Any]:
    with gr.Accordion("New evaluation", open=True):
        with gr.Row():
            name = gr.Textbox(label="Name", elem_id="ft-e-name")
            contestants = gr.Dropdown(
                label="Contestants (the first is the baseline)", choices=[], multiselect=True,
                allow_custom_value=True, elem_id="ft-e-contestants", scale=2,
            )  # fmt: skip
        source, version, split, upload = prompt_source_fields(
            "Examples", "Examples file (prompt + reference)", "ft-e"
        )
        with gr.Row():
            chosen_metrics = gr.Dropdown(
                list(TEXT_METRICS), value=list(DEFAULT_METRICS), multiselect=True,
                allow_custom_value=True, label="Metrics", scale=2, elem_id="ft-e-metrics",
            )  # fmt: skip
            regex = gr.Textbox(label="Regex (for the regex metric)")
        # Checks that run an admin's code are off unless the installation turns them on: the
        # fields say so rather than take a file or a command that the run would refuse.
        code_on = services.settings.code_checks
        with gr.Row():
            ready = gr.Dropdown(list(READY_CHECKS), value=[], multiselect=True,
                                allow_custom_value=True, label="Ready checks",
                                elem_id="ft-e-ready")  # fmt: skip
            python_check = gr.File(label="Python check: check(answer, reference, prompt)",
                                   type="filepath", file_types=[".py"],
                                   interactive=code_on)  # fmt: skip
            command_check = gr.Textbox(label="Command check: NAME=COMMAND ({file} or stdin)",
                                       interactive=code_on)  # fmt: skip
            command_input = gr.Dropdown(["stdin", "file"], value="stdin", label="Answer given on",
                                        interactive=code_on)  # fmt: skip
        if not code_on:
            gr.Markdown(f"Note: {CODE_CHECKS_OFF}.", elem_id="ft-e-code-checks-off")
        with gr.Row():
            judge_url = gr.Textbox(label="Judge: OpenAI-compatible URL (optional)")
            judge_model = gr.Textbox(label="Judge model")
            temperature = gr.Slider(0, 2, value=DEFAULT_SAMPLING.temperature, step=0.05,
                                    label="Temperature (0: greedy)")  # fmt: skip
            max_new_tokens = gr.Number(value=DEFAULT_SAMPLING.max_new_tokens, precision=0,
                                       minimum=1, maximum=MAX_NEW_TOKENS,
                                       label="Max new tokens")  # fmt: skip
        start = gr.Button("Start evaluation", variant="primary", elem_id="ft-e-start")
    message = gr.Markdown("", elem_id="ft-e-message")

    gr.Markdown("### Runs")
    runs_table = gr.Dataframe(headers=RUN_HEADERS, interactive=False, wrap=True,
                              elem_id="ft-e-runs")  # fmt: skip
    with gr.Row():
        chosen = gr.Dropdown(label="Run", choices=[], allow_custom_value=True, scale=3,
                             elem_id="ft-e-run")  # fmt: skip
        show = gr.Button("Show report", variant="primary", elem_id="ft-e-show")
        retry = gr.Button("Retry failed answers", size="sm")
        cancel = gr.Button("Cancel run", size="sm", variant="stop")

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

    fresh_choices_on_focus(services, version, lambda: version_labels(services), "eval_versions")
    fresh_choices_on_focus(
        services, contestants, lambda: contestant_names(services), "eval_contestant_names"
    )

    @guarded(services, Role.ADMIN)
    def refresh(request: gr.Request, current: str | None):
        names, versions = contestant_names(services), version_labels(services)
        with services.db() as db:
            summaries = run_summaries(db)
        run_names = [s.run.name for s in summaries]
        return (
            gr.update(choices=names),
            gr.update(choices=versions),
            [_run_row(s) for s in summaries],
            gr.update(choices=run_names, value=current if current in run_names else None),
        )

    @guarded(services, Role.ADMIN)
    def show_runs(request: gr.Request) -> list[list]:
        with services.db() as db:
            return [_run_row(s) for s in run_summaries(db)]

    @guarded(services, Role.ADMIN)
    def start_run(request: gr.Request, new_name: str, picked: list[str], where: str,
                  version_label: str, split_name: str, file: str | None, metric_names: list[str],
                  pattern: str, ready_names: list[str], python_file: str | None, command: str,
                  given_on: str, url: str, model: str, temp: float, max_tokens: Any):  # fmt: skip
        max_new = to_int(max_tokens, "max new tokens", minimum=1)
        sampling = Sampling(temperature=float(temp), top_p=1.0, max_new_tokens=max_new)
        if bool((url or "").strip()) != bool((model or "").strip()):
            raise ValidationError("give both the judge's URL and its model, or neither")
        python_files = []
        if python_file:
            # Kept only where it may run; else create_run refuses it before anything is copied.
            kept = Path(python_file)
            if services.settings.code_checks:
                kept = keep_check_file(services.settings.home / "checks", python_file)
            python_files.append((_check_name(Path(python_file).stem), kept))
        specs = check_specs(ready_names or [], [], [command] if (command or "").strip() else [],
                            given_on or "stdin")  # fmt: skip
        specs += [{"name": n, "kind": "python", "path": str(p)} for n, p in python_files]
        scoring = {"metrics": metric_names or list(DEFAULT_METRICS)}
        if (pattern or "").strip():
            scoring["regex"] = pattern
        judge = {"url": url.strip(), "model": model.strip()} if (url or "").strip() else None
        with services.db() as db:
            prompts, label = load_prompts(db, where, version_label, split_name, file)
            version_id = None
            if where != FROM_FILE:
                from ftapp.data.versions import resolve_version

                version_id = resolve_version(db, version_label).id
            run = create_run(
                db, services.served_base, name=new_name, prompts=prompts, source=label,
                contestants=picked or [], sampling=sampling, scoring=scoring,
                check_specs=specs, judge_config=judge, dataset_version_id=version_id,
                code_checks=services.settings.code_checks,
                user=current_user(services, request).name,
            )  # fmt: skip
        services.answer_generator.wake()
        answers = len(prompts) * len(run.contestants)
        text = (f"Started **{escape_markdown(run.name)}**: {answers} answers are being "
                "generated, then scored. The report appears when it is done.")  # fmt: skip
        return text, run.name

    @guarded(services, Role.ADMIN)
    def report(request: gr.Request, run_name: str | None):
        if not run_name:
            raise ValidationError("choose a run first")
        with services.db() as db:
            built = build_report(db, run_name)
        return _render(built)

    @guarded(services, Role.ADMIN)
    def example(request: gr.Request, run_name: str | None, number: Any) -> str:
        if not run_name:
            raise ValidationError("choose a run first")
        with services.db() as db:
            detail = example_detail(db, run_name, to_int(number, "example", minimum=1))
        return _example_html(detail)

    def run_action(action):
        @guarded(services, Role.ADMIN)
        def act(request: gr.Request, run_name: str | None) -> str:
            if not run_name:
                raise ValidationError("choose a run first")
            with services.db() as db:
                text = action(db, run_name)
            services.answer_generator.wake()
            return text

        return act

    def do_retry(db, run_name: str) -> str:
        count = retry_run(db, run_name)
        return f"{count} failed answers of {escape_markdown(run_name)} will be generated again."

    def do_cancel(db, run_name: str) -> str:
        cancel_run(db, run_name)
        return f"Run {escape_markdown(run_name)} is cancelled."

    def exporter(fmt: str):
        @guarded(services, Role.ADMIN)
        def export(request: gr.Request, run_name: str | None) -> str:
            if not run_name:
                raise ValidationError("choose a run first")
            out = download_path(
                current_user(services, request), f"{_check_name(run_name)}-results.{fmt}"
            )
            with services.db() as db:
                write_results(db, run_name, out, fmt)
            return str(out)

        return export

    refresh_outputs = [contestants, version, runs_table, chosen]
    start_inputs = [name, contestants, source, version, split, upload, chosen_metrics, regex,
                    ready, python_check, command_check, command_input, judge_url, judge_model,
                    temperature, max_new_tokens]  # fmt: skip
    report_outputs = [summary, table, plot, extremes]
    started = start.click(start_run, start_inputs, [message, chosen], api_name="eval_start")
    started.then(refresh, [chosen], refresh_outputs, api_name=False)
    show.click(report, [chosen], report_outputs, api_name="eval_report")
    show_example.click(example, [chosen, position], [example_view], api_name="eval_example")
    for button, action, api in [
        (retry, do_retry, "eval_retry"),
        (cancel, do_cancel, "eval_cancel"),
    ]:
        button.click(run_action(action), [chosen], [message], api_name=api).then(
            refresh, [chosen], refresh_outputs, api_name=False
        )
    csv_button.click(exporter("csv"), [chosen], [exported], api_name="eval_export_csv")
    jsonl_button.click(exporter("jsonl"), [chosen], [exported], api_name="eval_export_jsonl")
    timer = gr.Timer(POLL_SECONDS, active=False)  # started for admins when the page loads
    timer.tick(show_runs, None, [runs_table], api_name=False, show_progress="hidden")
    return {"load": [(refresh, [chosen], refresh_outputs)], "timers": [timer]}


def _check_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:40] or "check"


def _run_row(summary: RunSummary) -> list:
    run, progress = summary.run, summary.progress
    note = "; ".join([*summary.failures, *([run.error] if run.error else [])])
    return [run.name, run.status.value, f"{progress.done}/{progress.total}", progress.failed,
            ", ".join(c.name for c in run.contestants), run.source, note]  # fmt: skip


def _render(report: RunReport) -> tuple:
    run = report.run
    lines = [f"**{escape_markdown(run.name)}** ({run.status}): {escape_markdown(run.source)}; "
             f"baseline **{escape_markdown(run.baseline.name)}**."]  # fmt: skip
    if run.error:
        lines.append(f"Note: {escape_markdown(run.error)}")
    failed = [f"{escape_markdown(k)} {v}" for k, v in report.failed.items() if v]
    if failed:
        lines.append("Answers that could not be generated: " + ", ".join(failed))
    for row in report.rows:
        if row.verdict in ("better", "worse"):
            lines.append(f"- {escape_markdown(row.contestant)} is **{row.verdict}** than the "
                         f"baseline on {escape_markdown(row.label)}")  # fmt: skip
    rows = [[r.metric, r.contestant, _round(r.value.mean), _round(r.value.low),
             _round(r.value.high), r.value.n,
             _round(r.vs_baseline.mean) if r.vs_baseline else None,
             _round(r.vs_baseline.low) if r.vs_baseline else None,
             _round(r.vs_baseline.high) if r.vs_baseline else None, r.verdict]
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

    shown = [m for m in report.metrics if m != "judge"][:8]
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
