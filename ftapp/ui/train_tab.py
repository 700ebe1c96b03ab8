"""The Train tab: pick a frozen dataset version and a base model, set the hyperparameters (or
a preset), queue the job, and watch it: loss curves, speed, ETA, log, cancel. Everything shown
is read from SQLite on a timer, so closing the page changes nothing and reopening it shows the
running job."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from ftapp.errors import ValidationError
from ftapp.models.registry import get_base_model, list_base_models
from ftapp.records import Role
from ftapp.services import Services
from ftapp.store import jobs as job_store
from ftapp.store.evaluation import runs_with_model
from ftapp.store.exports import exports_of
from ftapp.training.config import PRESETS, SCHEDULERS, TrainConfig, config_from_dict
from ftapp.training.gpu_memory import gpu_wait_reason, has_nvidia_gpu
from ftapp.training.jobs import cancel_job, job_progress, queue_job
from ftapp.ui.common import (
    Load,
    TabWiring,
    current_user,
    download_path,
    escape_markdown,
    fresh_choices_on_focus,
    guarded,
    require,
    version_labels,
)

POLL_SECONDS = 2.0
JOB_HEADERS = ["id", "name", "status", "step", "created", "by"]
# Every TrainConfig field but the two pickers gets an input: (label, choices or None).
FIELDS = {
    "name": ("Adapter name (optional)", None),
    "lora_rank": ("LoRA rank", None),
    "lora_alpha": ("LoRA alpha", None),
    "lora_dropout": ("LoRA dropout", None),
    "target_modules": ("Target modules", None),
    "learning_rate": ("Learning rate", None),
    "epochs": ("Epochs", None),
    "max_steps": ("Max steps (0: use epochs)", None),
    "time_limit_minutes": ("Time limit in minutes (0: none; stops and keeps the adapter)", None),
    "batch_size": ("Batch size (packed rows per forward pass)", None),
    "gradient_accumulation": ("Gradient accumulation", None),
    "max_length": ("Max length (tokens)", None),
    "warmup_ratio": ("Warm-up ratio", None),
    "scheduler": ("Scheduler", list(SCHEDULERS)),
    "seed": ("Seed", None),
    "eval_steps": ("Evaluate every N steps (0: off)", None),
    "save_steps": ("Save every N steps", None),
    "early_stopping_patience": ("Early-stopping patience (0: off)", None),
    "assistant_only_loss": ("Loss on assistant answers only", None),
    "precision": ("Precision", ["auto", "fp32", "bf16"]),
    "quantization": ("Quantization", ["none", "4bit"]),
    "gradient_checkpointing": ("Gradient checkpointing", None),
    "threads": ("CPU threads (0: all)", None),
}


def default_preset() -> str:
    return "GPU default" if has_nvidia_gpu() else "quick CPU demo"


def build_train_tab(services: Services) -> TabWiring:
    with gr.Row():
        with gr.Column(scale=2):
            form = _build_job_form(services)
        with gr.Column(scale=3):
            jobs = _build_jobs_view(services)

    @guarded(services, Role.ADMIN)
    def load_choices(request: gr.Request, current_job: int | None):
        versions = version_labels(services)
        with services.db() as db:
            models = [m.name for m in list_base_models(db, services.settings.models_dir)]
            latest = job_store.list_jobs(db, limit=1)
        job_id = current_job or (latest[0].id if latest else None)
        return (
            gr.update(choices=versions, value=versions[0] if versions else None),
            gr.update(choices=models, value=models[0] if models else None),
            job_id,
        )

    @guarded(services, Role.ADMIN)
    def queue(request: gr.Request, version_label: str, model: str, *values):
        config = _config_of(version_label, model, values)
        with services.db() as db:
            job = queue_job(db, services.settings, config, current_user(services, request).name)
            model_path = get_base_model(db, services.settings.models_dir, job.base_model).path
        gr.Info(f"Queued job #{job.id} ({job.name}).")
        # On a GPU shared with vLLM: say now if the job will wait for memory, and why.
        waiting = gpu_wait_reason(config, model_path, services.settings.vllm_gpu_memory)
        if waiting:
            gr.Warning(f"Job #{job.id} is {waiting}.")
        return job.id

    form.queue.click(queue, form.fields, [jobs.selected], api_name="queue_job").then(
        *jobs.redraw, api_name=False
    )
    load = (load_choices, [jobs.selected], [form.fields[0], form.fields[1], jobs.selected])
    return TabWiring(on_load=(load,), timers=(jobs.timer,))


@dataclass(frozen=True)
class JobForm:
    fields: list[Any]  # the dataset version, the base model, then every FIELDS input in order
    queue: gr.Button


def _build_job_form(services: Services) -> JobForm:
    """The new-job form: the pickers, a preset, every hyperparameter, the config as YAML."""
    defaults = dataclasses.asdict(TrainConfig(dataset_version="-", **PRESETS[default_preset()]))
    gr.Markdown("### New training job")
    if services.settings.demo:
        settings = services.settings
        gr.Markdown(
            f"Demo limits: at most {settings.demo_max_examples} training examples, "
            f"max steps 1 to {settings.demo_max_steps}, and a job stops after "
            f"{settings.demo_max_minutes} minutes (keeping its adapter)."
        )
    # Custom values let API clients name any version or model; the core checks them.
    version = gr.Dropdown(label="Dataset version", choices=[], allow_custom_value=True,
                          elem_id="ft-train-version")  # fmt: skip
    base_model = gr.Dropdown(label="Base model", choices=[], allow_custom_value=True,
                             elem_id="ft-train-base")  # fmt: skip
    preset_name = gr.Dropdown(list(PRESETS), value=default_preset(), label="Preset")
    with gr.Accordion("Hyperparameters", open=True):
        field_inputs = [_input(field, label, choices, defaults[field])
                        for field, (label, choices) in FIELDS.items()]  # fmt: skip
    with gr.Row():
        queue_button = gr.Button("Queue job", variant="primary", elem_id="ft-queue")
        yaml_button = gr.Button("Show config as YAML")
    yaml_view = gr.Code(language="yaml", label="Config", visible=False)
    yaml_file = gr.File(label="Config YAML", visible=False)

    @guarded(services, Role.ADMIN)
    def apply_preset(request: gr.Request, name: str | None):
        values = dataclasses.asdict(TrainConfig(dataset_version="-", **PRESETS[name]))
        return [values[field] for field in FIELDS]

    # The request comes first: the hyperparameters follow as *values, in FIELDS order.
    @guarded(services, Role.ADMIN)
    def show_yaml(request: gr.Request, version_label: str, model: str, *values):
        config = _config_of(version_label, model, values)
        name = f"train-{config.dataset_version.replace('@', '-')}.yaml"
        out = download_path(current_user(services, request), name)
        out.write_text(config.to_yaml())
        return gr.update(value=config.to_yaml(), visible=True), gr.update(value=str(out),
                                                                         visible=True)  # fmt: skip

    fields = [version, base_model, *field_inputs]
    fresh_choices_on_focus(services, version, lambda: version_labels(services), "train_versions")
    gr.on([preset_name.change], apply_preset, [preset_name], field_inputs, api_name="train_preset")
    yaml_button.click(show_yaml, fields, [yaml_view, yaml_file], api_name="train_config_yaml")
    return JobForm(fields, queue_button)


def _config_of(version_label: str, model: str, values: tuple) -> TrainConfig:
    if not version_label:
        raise ValidationError("dataset_version: freeze a dataset version in the Data tab first")
    raw = {"dataset_version": version_label, "base_model": model}
    raw.update(zip(FIELDS, values, strict=True))
    return config_from_dict(raw)


@dataclass(frozen=True)
class JobsView:
    selected: gr.Number  # the job shown
    redraw: Load  # redraws the table and the selected job
    timer: gr.Timer


def _build_jobs_view(services: Services) -> JobsView:
    """The jobs table and the selected job: its curves, its variants, its log, Cancel."""
    gr.Markdown("### Jobs")
    jobs_table = gr.Dataframe(headers=JOB_HEADERS, interactive=False, elem_id="ft-jobs")
    selected = gr.Number(label="Job", precision=0, elem_id="ft-job-id")
    status = gr.Markdown(elem_id="ft-job-status")
    with gr.Row():
        loss_plot = gr.LinePlot(x="step", y="loss", color="kind", title="Loss",
                                elem_id="ft-loss-plot")  # fmt: skip
        lr_plot = gr.LinePlot(x="step", y="learning_rate", title="Learning rate")
    cancel_button = gr.Button("Cancel job", variant="stop", elem_id="ft-cancel")
    variants = gr.Dataframe(
        headers=["variant", "kind", "step", "eval loss", "best", "evaluation runs", "exports"],
        interactive=False, label="Model variants", elem_id="ft-variants",
    )  # fmt: skip
    log_view = gr.Code(label="Log (tail)", language=None, lines=12)
    timer = gr.Timer(POLL_SECONDS, active=False)  # started for admins when the page loads
    job_outputs = [jobs_table, status, loss_plot, lr_plot, variants, log_view, cancel_button]

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
        return evt.row_value[0]

    @guarded(services, Role.ADMIN)
    def refresh(request: gr.Request, job_id: int | None):
        return _render_job(services, job_id)

    jobs_table.select(pick_job, None, [selected], api_name=False)
    selected.change(refresh, [selected], job_outputs, api_name="job_progress")
    cancel_button.click(cancel, [selected], job_outputs, api_name="cancel_job")
    timer.tick(refresh, [selected], job_outputs, api_name=False, show_progress="hidden")
    return JobsView(selected, (refresh, [selected], job_outputs), timer)


def _render_job(services: Services, job_id: int | None) -> list:
    with services.db() as db:
        jobs = job_store.list_jobs(db, limit=50)
        progress = job_progress(db, int(job_id)) if job_id else None
        # Each variant links to what was done with it: evaluation runs and exports.
        links = {v.name: (", ".join(r.name for r in runs_with_model(db, v.name)),
                          ", ".join(e["kind"] for e in exports_of(db, v.name)))
                 for v in (progress or {}).get("variants", [])}  # fmt: skip
    table = [[j.id, j.name, j.status.value, f"{j.step}/{j.total_steps or '?'}",
              j.created_at[:19], j.created_by] for j in jobs]  # fmt: skip
    if progress is None:
        return [table, "No job selected.", None, None, [], "", gr.Button(interactive=False)]
    curves = pd.DataFrame(
        [{"step": m["step"], "loss": m["loss"], "kind": m["kind"]}
         for m in progress["train"] + progress["eval"]],
        columns=["step", "loss", "kind"],
    )  # fmt: skip
    rates = pd.DataFrame(
        [{"step": m["step"], "learning_rate": m["learning_rate"]} for m in progress["train"]],
        columns=["step", "learning_rate"],
    )
    rows = [[v.name, v.kind, v.step, _round(v.eval_loss), "★" if v.is_best else "",
             *links[v.name]] for v in progress["variants"]]  # fmt: skip
    # Only a queued or running job can be cancelled; the button says so by its state.
    can_cancel = not progress["job"].status.is_finished
    return [table, _status_markdown(progress), curves, rates, rows, progress["log_tail"],
            gr.Button(interactive=can_cancel)]  # fmt: skip


def _input(field: str, label: str, choices: list[str] | None, value):
    if choices:
        return gr.Dropdown(choices, value=value, label=label)
    if isinstance(value, bool):
        return gr.Checkbox(value=value, label=label)
    if isinstance(value, int):
        return gr.Number(value=value, label=label, precision=0)
    if isinstance(value, float):
        return gr.Number(value=value, label=label)
    return gr.Textbox(value=value, label=label)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _status_markdown(progress: dict) -> str:
    job = progress["job"]
    parts = [f"**#{job.id} {escape_markdown(job.name)}**: {job.status.value}"]
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
