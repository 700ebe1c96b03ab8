"""The Evaluate tab (admins): automatic evaluation on held-out examples. Create a run (the
examples, the contestants with the baseline first, metrics (preference accuracy offered and
picked for a preference version's pairs), checks, an optional judge model),
watch its answers being generated and scored, then read its report: every metric with its
95% interval and the difference to the baseline, a plot, the examples that gained and lost
the most, any example side by side with its reference, and the results as CSV or JSONL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ftapp.evaluation.checks import CODE_CHECKS_OFF, READY_CHECKS
from ftapp.evaluation.metrics import DEFAULT_METRICS, TEXT_METRICS
from ftapp.evaluation.preference_accuracy import METRIC as PREFERENCE_METRIC
from ftapp.evaluation.preference_accuracy import offers_preference_accuracy
from ftapp.evaluation.runs import (
    DEFAULT_SAMPLING,
    RunSummary,
    cancel_run,
    retry_run,
    run_progress,
    run_summaries,
    start_run,
)
from ftapp.evaluation.sizing import size_warning
from ftapp.records import Role, RunStatus
from ftapp.services import Services
from ftapp.serving.backend import MAX_NEW_TOKENS, sampling_from_fields
from ftapp.ui.common import (
    TabWiring,
    contestant_names,
    current_user,
    escape_markdown,
    fresh_choices_on_focus,
    guarded,
    prompt_source,
    prompt_source_fields,
    require,
    version_labels,
)
from ftapp.ui.evaluate_canary import build_canary_section
from ftapp.ui.evaluate_report import ReportView, build_report_section, render_report

POLL_SECONDS = 2.0
RUN_HEADERS = ["run", "status", "answers", "failed", "contestants", "examples from", "note"]


FINISHED = (RunStatus.DONE, RunStatus.FAILED, RunStatus.CANCELLED)


def build_evaluate_tab(services: Services) -> TabWiring:
    form = _build_run_form(services)
    runs = _build_runs_section(services, form)
    report = build_report_section(services, runs.chosen, runs.show)
    canaries = build_canary_section(services)
    return runs.wiring + _follow_runs(services, runs, report) + canaries


def _follow_runs(services: Services, runs: RunsSection, report: ReportView) -> TabWiring:
    """The runs table on a timer, the chosen run's buttons enabled only when they apply, and
    its report drawn by itself as soon as the run is done (or as soon as a finished run is
    chosen): no "Show report" click to find out how it went."""
    # Which finished run (and in which state: a retried run finishes again) the report shows.
    shown = gr.State(None)

    @guarded(services, Role.ADMIN)
    def follow(request: gr.Request, current: str | None, shown_key: str | None) -> tuple:
        with services.db() as db:
            summaries = run_summaries(db)
        rows = [_run_row(s) for s in summaries]
        chosen = next((s for s in summaries if s.run.name == current), None)
        running = chosen is not None and chosen.run.status not in FINISHED
        buttons = (gr.update(interactive=chosen is not None and chosen.progress.failed > 0
                             and chosen.run.status != RunStatus.CANCELLED),
                   gr.update(interactive=running))  # fmt: skip
        key = chosen and f"{chosen.run.name}|{chosen.run.status}|{chosen.progress}"
        if chosen is None or running or shown_key == key:
            return rows, *buttons, *[gr.skip()] * len(report.outputs), shown_key
        return rows, *buttons, *render_report(services, chosen.run.name), key

    outputs = [runs.table, runs.retry, runs.cancel, *report.outputs, shown]
    timer = gr.Timer(POLL_SECONDS, active=False)  # started for admins when the page loads
    timer.tick(follow, [runs.chosen, shown], outputs, api_name=False, show_progress="hidden")
    runs.chosen.change(follow, [runs.chosen, shown], outputs, api_name=False)
    return TabWiring(timers=(timer,))


@dataclass(frozen=True)
class RunForm:
    """The "New evaluation" form: its fields in the order /eval_start takes them."""

    fields: list[Any]
    contestants: gr.Dropdown
    version: gr.Dropdown
    start: gr.Button
    message: gr.Markdown


def _build_run_form(services: Services) -> RunForm:
    with gr.Accordion("New evaluation", open=True):
        with gr.Row():
            name = gr.Textbox(label="Name", elem_id="ft-e-name")
            contestants = gr.Dropdown(
                label="Contestants (the first is the baseline)", choices=[], multiselect=True,
                allow_custom_value=True, elem_id="ft-e-contestants", scale=2,
            )  # fmt: skip
        source, version, split, upload = prompt_source_fields(
            services, "Examples", "Examples file (prompt + reference)", "ft-e"
        )
        with gr.Row():
            chosen_metrics = gr.Dropdown(
                list(TEXT_METRICS), value=list(DEFAULT_METRICS), multiselect=True,
                allow_custom_value=True, label="Metrics", scale=2, elem_id="ft-e-metrics",
            )  # fmt: skip
            regex = gr.Textbox(label="Regex (for the regex metric)")
        checks = _check_fields(services.settings.code_checks)
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
    fresh_choices_on_focus(services, version, lambda: version_labels(services), "eval_versions")
    fresh_choices_on_focus(
        services, contestants, lambda: contestant_names(services), "eval_contestant_names"
    )
    _offer_preference_metric(services, version, split, chosen_metrics)
    fields = [name, contestants, source, version, split, upload, chosen_metrics, regex,
              *checks, judge_url, judge_model, temperature, max_new_tokens]  # fmt: skip
    return RunForm(fields, contestants, version, start, message)


def _offer_preference_metric(
    services: Services, version: gr.Dropdown, split: gr.Dropdown, chosen: gr.Dropdown
) -> None:
    """Preference accuracy is offered, and picked, when the examples are a preference
    version's split with pairs; otherwise it is taken out (the run would refuse it)."""

    @guarded(services, Role.ADMIN)
    def offer(request: gr.Request, label: str | None, split_name: str | None,
              picked: list[str] | None) -> dict:  # fmt: skip
        with services.db() as db:
            on = offers_preference_accuracy(db, label, split_name)
        picked = [m for m in picked or [] if m != PREFERENCE_METRIC]
        choices = [*TEXT_METRICS, *([PREFERENCE_METRIC] if on else [])]
        return gr.update(choices=choices, value=(picked + [PREFERENCE_METRIC]) if on else picked)

    for field in (version, split):
        field.change(offer, [version, split, chosen], [chosen], api_name=False,
                     show_progress="hidden")  # fmt: skip


def _check_fields(code_on: bool) -> list[Any]:
    """Ready checks, a Python check file, a command check and how it gets the answer."""
    # Checks that run an admin's code are off unless the installation turns them on: the
    # fields say so rather than take a file or a command that the run would refuse.
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
    return [ready, python_check, command_check, command_input]


@dataclass(frozen=True)
class RunsSection:
    table: gr.Dataframe
    chosen: gr.Dropdown  # the run the buttons and the report act on
    show: gr.Button  # "Show report"
    retry: gr.Button
    cancel: gr.Button
    wiring: TabWiring


def _build_runs_section(services: Services, form: RunForm) -> RunsSection:
    """The runs table with the run picker and its buttons; starting a run (the form's button)
    lands here too."""
    gr.Markdown("### Runs")
    runs_table = gr.Dataframe(headers=RUN_HEADERS, interactive=False, wrap=True,
                              elem_id="ft-e-runs")  # fmt: skip
    with gr.Row():
        chosen = gr.Dropdown(label="Run", choices=[], allow_custom_value=True, scale=3,
                             elem_id="ft-e-run")  # fmt: skip
        show = gr.Button("Show report", variant="primary", elem_id="ft-e-show")
        retry = gr.Button("Retry failed answers", size="sm", interactive=False,
                          elem_id="ft-e-retry")  # fmt: skip
        cancel = gr.Button("Cancel run", size="sm", variant="stop", interactive=False,
                           elem_id="ft-e-cancel")  # fmt: skip

    @guarded(services, Role.ADMIN)
    def refresh(request: gr.Request, current: str | None, version: str | None):
        names, versions = contestant_names(services), version_labels(services)
        with services.db() as db:
            summaries = run_summaries(db)
        run_names = [s.run.name for s in summaries]
        return (
            gr.update(choices=names),
            # The newest version is the likely one (the Train tab picks it too).
            gr.update(
                choices=versions,
                value=version if version in versions else (versions[0] if versions else None),
            ),  # fmt: skip
            [_run_row(s) for s in summaries],
            gr.update(choices=run_names, value=current if current in run_names else None),
        )

    refresh_inputs = [chosen, form.version]
    refresh_outputs = [form.contestants, form.version, runs_table, chosen]
    started = form.start.click(_starter(services), form.fields, [form.message, chosen],
                               api_name="eval_start")  # fmt: skip
    started.then(refresh, refresh_inputs, refresh_outputs, api_name=False)
    for button, action, api in [
        (retry, _retry, "eval_retry"),
        (cancel, _cancel, "eval_cancel"),
    ]:
        button.click(_run_action(services, action), [chosen], [form.message],
                     api_name=api).then(refresh, refresh_inputs, refresh_outputs,
                                        api_name=False)  # fmt: skip
    wiring = TabWiring(on_load=((refresh, refresh_inputs, refresh_outputs),))
    return RunsSection(runs_table, chosen, show, retry, cancel, wiring)


def _starter(services: Services):
    @guarded(services, Role.ADMIN)
    def start_evaluation(request: gr.Request, new_name: str, picked: list[str], where: str,
                         version_label: str, split_name: str, file: str | None,
                         metric_names: list[str], pattern: str, ready_names: list[str],
                         python_file: str | None, command: str, given_on: str, url: str,
                         model: str, temp: float, max_tokens: Any):  # fmt: skip
        sampling = sampling_from_fields(temperature=temp, top_p=1.0, max_new_tokens=max_tokens)
        source = prompt_source(where, version_label, file)
        with services.db() as db:
            run = start_run(
                db, services.served_base, services.settings, name=new_name,
                contestants=picked or [], split=split_name, sampling=sampling,
                metric_names=metric_names, regex=pattern, ready_checks=ready_names,
                python_checks=[python_file] if python_file else [],
                command_checks=[command] if command else [], check_input=given_on,
                judge_url=url, judge_model=model, user=current_user(services, request).name,
                **source,
            )  # fmt: skip
            answers = run_progress(db, run.id).total
        services.answer_generator.wake()
        text = (f"Started **{escape_markdown(run.name)}**: {answers} answers are being "
                "generated, then scored. The report appears when it is done.")  # fmt: skip
        warning = size_warning(answers // len(run.contestants))
        return text + (f"\n\n**Too few to decide:** {warning}" if warning else ""), run.name

    return start_evaluation


def _run_action(services: Services, action):
    @guarded(services, Role.ADMIN)
    def act(request: gr.Request, run_name: str | None) -> str:
        run_name = require(run_name, "choose a run first")
        with services.db() as db:
            text = action(db, run_name)
        services.answer_generator.wake()
        return text

    return act


def _retry(db, run_name: str) -> str:
    count = retry_run(db, run_name)
    return f"{count} failed answers of {escape_markdown(run_name)} will be generated again."


def _cancel(db, run_name: str) -> str:
    cancel_run(db, run_name)
    return f"Run {escape_markdown(run_name)} is cancelled."


def _run_row(summary: RunSummary) -> list:
    run, progress = summary.run, summary.progress
    note = "; ".join([*summary.failures, *([run.error] if run.error else [])])
    return [run.name, run.status.value, f"{progress.done}/{progress.total}", progress.failed,
            ", ".join(c.name for c in run.contestants), run.source, note]  # fmt: skip
