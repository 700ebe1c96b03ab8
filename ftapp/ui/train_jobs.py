"""The Train tab's jobs view: the jobs table and the selected job, with its loss, learning-rate
and (for DPO, ORPO and KTO) reward and preference-accuracy curves, its variants, its log and
Cancel. Everything shown is read from SQLite on a timer, so closing the page changes nothing
and reopening it shows the running job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from ftapp.evaluation.drift import Drift, drift_table
from ftapp.records import Role
from ftapp.services import Services
from ftapp.store import jobs as job_store
from ftapp.store.evaluation import runs_with_model
from ftapp.store.exports import exports_of
from ftapp.training.jobs import cancel_job, job_progress
from ftapp.ui.common import Load, escape_markdown, fresh_choices_on_focus, guarded, require

POLL_SECONDS = 2.0
JOB_HEADERS = ["id", "name", "status", "step", "created", "by"]
KIND_COLORS = {"train": "#1f77b4", "eval": "#ff7f0e"}  # eval: the validation loss
REWARD_COLORS = {"chosen": "#2ca02c", "rejected": "#d62728", "margin": "#9467bd"}


@dataclass(frozen=True)
class JobsView:
    selected: gr.Dropdown  # the job shown (its id)
    redraw: Load  # redraws the table and the selected job
    timer: gr.Timer


def build_jobs_view(services: Services) -> JobsView:
    """The jobs table and the selected job: its curves, its variants, its log, Cancel."""
    gr.Markdown("### Jobs")
    jobs_table = gr.Dataframe(headers=JOB_HEADERS, interactive=False, elem_id="ft-jobs")
    # Pick a job here or click its row in the table; API callers may name any job id.
    selected = gr.Dropdown(label="Job (or click a row above)", choices=[],
                           allow_custom_value=True, elem_id="ft-job-id")  # fmt: skip
    status = gr.Markdown(elem_id="ft-job-status")
    # The chart fixes its series when it is drawn and only swaps the data after that, so a
    # series that appears later (the validation loss, at the first evaluation) stayed hidden
    # until the page was reloaded. The title names the series shown: when one appears, the
    # title changes, and a new title makes the chart draw itself anew (_titled).
    with gr.Row():
        loss_plot = gr.LinePlot(x="step", y="loss", color="kind", title="Loss",
                                color_map=KIND_COLORS, elem_id="ft-loss-plot")  # fmt: skip
        lr_plot = gr.LinePlot(x="step", y="learning_rate", title="Learning rate")
    # What DPO, ORPO and KTO report; shown for their jobs only.
    with gr.Row():
        rewards_plot = gr.LinePlot(x="step", y="reward", color="series", visible=False,
                                   title="Rewards (implicit, against the reference)",
                                   color_map=REWARD_COLORS, elem_id="ft-rewards-plot")  # fmt: skip
        accuracy_plot = gr.LinePlot(x="step", y="accuracy", color="kind", visible=False,
                                    title="Preference accuracy (chosen rewarded above rejected)",
                                    color_map={"train": KIND_COLORS["train"],
                                               "validation": KIND_COLORS["eval"]},
                                    elem_id="ft-accuracy-plot")  # fmt: skip
    cancel_button = gr.Button("Cancel job", variant="stop", elem_id="ft-cancel")
    variants = gr.Dataframe(
        headers=["variant", "kind", "step", "eval loss", "drift", "best", "evaluation runs",
                 "exports"],
        interactive=False, label="Model variants (drift: nats per token away from the base "
        "model on general prompts, measured in the background)", elem_id="ft-variants",
    )  # fmt: skip
    # What each checkpoint learned (validation loss) against what it cost (drift): pick the
    # one that learned the most for the least forgetting.
    tradeoff = gr.ScatterPlot(x="drift", y="validation loss", color="variant", visible=False,
                              title="Validation loss against drift, a point per checkpoint",
                              elem_id="ft-tradeoff-plot")  # fmt: skip
    log_view = gr.Code(label="Log (tail)", language=None, lines=12, wrap_lines=True,
                       elem_id="ft-job-log")  # fmt: skip
    timer = gr.Timer(POLL_SECONDS, active=False)  # started for admins when the page loads
    job_outputs = [jobs_table, status, loss_plot, lr_plot, rewards_plot, accuracy_plot, variants,
                   tradeoff, log_view, cancel_button]  # fmt: skip

    @guarded(services, Role.ADMIN)
    def cancel(request: gr.Request, job_id: int | None):
        job_id = require(job_id or None, "Select a job first.")
        with services.db() as db:
            job = cancel_job(db, int(job_id))
        gr.Info(
            f"Job #{job.id}: {'stopping' if job.status.value == 'running' else job.status.value}."
        )
        return _render_job(services, job_id)

    @guarded(services, Role.ADMIN)
    def pick_job(request: gr.Request, evt: gr.SelectData):
        return gr.update(choices=job_choices(services), value=evt.row_value[0])

    @guarded(services, Role.ADMIN)
    def refresh(request: gr.Request, job_id: int | None):
        return _render_job(services, job_id)

    jobs_table.select(pick_job, None, [selected], api_name=False)
    fresh_choices_on_focus(services, selected, lambda: job_choices(services), "train_job_choices")
    selected.change(refresh, [selected], job_outputs, api_name="job_progress")
    cancel_button.click(cancel, [selected], job_outputs, api_name="cancel_job")
    timer.tick(refresh, [selected], job_outputs, api_name=False, show_progress="hidden")
    return JobsView(selected, (refresh, [selected], job_outputs), timer)


def job_choices(services: Services) -> list[tuple[str, int]]:
    """The job picker's choices, newest first: "#3 support-dpo (running)", each its id."""
    with services.db() as db:
        jobs = job_store.list_jobs(db, limit=50)
    return [(f"#{j.id} {j.name} ({j.status.value})", j.id) for j in jobs]


def _render_job(services: Services, job_id: int | None) -> list:
    with services.db() as db:
        jobs = job_store.list_jobs(db, limit=50)
        progress = job_progress(db, int(job_id)) if job_id else None
        # Each variant links to what was done with it: evaluation runs and exports.
        links = {v.name: (", ".join(r.name for r in runs_with_model(db, v.name)),
                          ", ".join(e["kind"] for e in exports_of(db, v.name)))
                 for v in (progress or {}).get("variants", [])}  # fmt: skip
        drift = drift_table(db)
    table = [[j.id, j.name, j.status.value, f"{j.step}/{j.total_steps or '?'}",
              j.created_at[:19], j.created_by] for j in jobs]  # fmt: skip
    if progress is None:
        hidden = gr.LinePlot(visible=False)
        return [table, "No job selected.", None, None, hidden, hidden, [],
                gr.ScatterPlot(visible=False), "", gr.Button(interactive=False)]  # fmt: skip
    curves = pd.DataFrame(
        [{"step": m["step"], "loss": m["loss"], "kind": m["kind"]}
         for m in progress["train"] + progress["eval"]],
        columns=["step", "loss", "kind"],
    )  # fmt: skip
    rates = pd.DataFrame(
        [{"step": m["step"], "learning_rate": m["learning_rate"]} for m in progress["train"]],
        columns=["step", "learning_rate"],
    )
    rows = [[v.name, v.kind, v.step, _round(v.eval_loss), _drift_text(drift.get(v.name)),
             "★" if v.is_best else "", *links[v.name]] for v in progress["variants"]]  # fmt: skip
    # Only a queued or running job can be cancelled; the button says so by its state.
    can_cancel = not progress["job"].status.is_finished
    rewards, accuracy = _preference_curves(progress)
    loss = _titled(curves, "kind", "Loss", {"train": "training", "eval": "validation"})
    return [table, _status_markdown(progress), loss, rates, rewards, accuracy, rows,
            _tradeoff(progress["variants"], drift), progress["log_tail"],
            gr.Button(interactive=can_cancel)]  # fmt: skip


def _drift_text(drift: Drift | None) -> str:
    if drift is None:
        return "…"  # not measured yet (or drift is off)
    if drift.status != "done":
        return "failed"
    return f"{drift.value.mean:.3f} [{drift.value.low:.3f}, {drift.value.high:.3f}]"


def _tradeoff(variants: list, drift: dict[str, Drift]) -> Any:
    """The checkpoints that have both a validation loss and a drift, as points."""
    points = pd.DataFrame(
        [{"drift": drift[v.name].value.mean, "validation loss": v.eval_loss,
          "variant": v.name.rsplit("/", 1)[-1]} for v in variants
         if v.kind == "checkpoint" and v.eval_loss is not None and v.name in drift
         and drift[v.name].status == "done"],
        columns=["drift", "validation loss", "variant"],
    )  # fmt: skip
    return gr.ScatterPlot(value=points, visible=not points.empty)


def _titled(data: pd.DataFrame, column: str, what: str, names: dict[str, str], **kwargs) -> Any:
    """A plot of `data` whose title names the series it shows ("Loss: training and
    validation"), so the chart is drawn anew when a series appears."""
    shown = [names[kind] for kind in names if kind in set(data[column])]
    title = f"{what}: {' and '.join(shown)}" if shown else what
    return gr.LinePlot(value=data, title=title, **kwargs)


REWARD_SERIES = {"rewards_chosen": "chosen", "rewards_rejected": "rejected",
                 "rewards_margin": "margin"}  # fmt: skip


def _preference_curves(progress: dict) -> tuple[Any, Any]:
    """The training rewards (chosen, rejected, their margin) and the preference accuracy on
    the training batches and the validation pairs; hidden for an SFT job."""
    shown = progress["job"].config.get("method", "sft") != "sft"
    rewards = pd.DataFrame(
        [{"step": m["step"], "reward": m[column], "series": series}
         for m in progress["train"] for column, series in REWARD_SERIES.items()
         if m.get(column) is not None],
        columns=["step", "reward", "series"],
    )  # fmt: skip
    accuracy = pd.DataFrame(
        [{"step": m["step"], "accuracy": m["rewards_accuracy"],
          "kind": "validation" if m["kind"] == "eval" else "train"}
         for m in progress["train"] + progress["eval"] if m.get("rewards_accuracy") is not None],
        columns=["step", "accuracy", "kind"],
    )  # fmt: skip
    return (gr.LinePlot(value=rewards, visible=shown),
            _titled(accuracy, "kind", "Preference accuracy (chosen rewarded above rejected)",
                    {"train": "training", "validation": "validation"},
                    visible=shown and not accuracy.empty))  # fmt: skip


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _status_markdown(progress: dict) -> str:
    job = progress["job"]
    parts = [f"**#{job.id} {escape_markdown(job.name)}**: {job.status.value}"]
    method = job.config.get("method", "sft")
    start = job.config.get("start_adapter")
    parts.append(method.upper() + (f" from {escape_markdown(start)}" if start else ""))
    if job.runner == "ray":
        workers = job.config.get("num_workers", 1)
        # As code: escaped, a URL's dots showed as "127\.0" in the link Markdown made of it.
        address = (job.run_address or "?").replace("`", "")
        parts.append(f"on the Ray cluster at `{address}` "
                     f"({workers} worker{'s' if workers != 1 else ''})")  # fmt: skip
    parts.append(f"step {job.step}/{job.total_steps or '?'}")
    if job.epoch is not None:
        parts.append(f"epoch {job.epoch:.2f}")
    if progress["eta_seconds"] is not None:
        parts.append(f"ETA {_duration(progress['eta_seconds'])}")
    if progress["tokens_per_second"]:
        parts.append(f"{progress['tokens_per_second']:.0f} tokens/s")
    if progress["last_loss"] is not None:
        parts.append(f"loss {progress['last_loss']:.4f}")
    if progress["best_eval_loss"] is not None:
        parts.append(f"best validation loss {progress['best_eval_loss']:.4f}")
    if progress["learning_rate"] is not None:
        parts.append(f"lr {progress['learning_rate']:.2e}")
    if progress.get("eval_accuracy") is not None:
        parts.append(f"validation preference accuracy {progress['eval_accuracy']:.0%}")
    text = " · ".join(parts)
    if job.attempts > 1:
        text += f"\n\nAttempt {job.attempts} (resumed from its last checkpoint)."
    if job.error:
        text += f"\n\n**Reason:** {escape_markdown(job.error)}"
    if (job.metrics or {}).get("stopped_at_time_limit"):
        minutes = job.config.get("time_limit_minutes")
        text += f"\n\nStopped early at its time limit ({minutes:g} min), at step {job.step}."
    if job.waiting_reason and job.status.value == "queued":
        text += f"\n\n**Waiting:** {escape_markdown(job.waiting_reason)}"
    return text


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else (
        f"{seconds // 60}m{seconds % 60:02d}s")  # fmt: skip
