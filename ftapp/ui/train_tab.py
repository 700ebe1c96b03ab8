"""The Train tab: pick a frozen dataset version, a base model and a method (SFT, or DPO, ORPO,
KTO on preference data, from the base or from an adapter), set the hyperparameters (or a
preset), queue the job, and watch it (train_jobs.py): loss and reward curves, speed, ETA, log,
cancel."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ftapp.errors import ValidationError
from ftapp.models.registry import get_base_model, list_base_models
from ftapp.records import Role
from ftapp.services import Services
from ftapp.store import jobs as job_store
from ftapp.training.config import (
    LOSS_TYPES,
    METHODS,
    PRESETS,
    RUNNERS,
    SCHEDULERS,
    TrainConfig,
    config_from_dict,
)
from ftapp.training.gpu_memory import gpu_wait_reason, has_nvidia_gpu
from ftapp.training.jobs import queue_job
from ftapp.ui.common import (
    TabWiring,
    current_user,
    download_path,
    fresh_choices_on_focus,
    guarded,
    version_labels,
)
from ftapp.ui.train_jobs import build_jobs_view, job_choices

# Every TrainConfig field but the two pickers gets an input: (label, choices or None).
FIELDS = {
    "name": ("Adapter name (optional)", None),
    "method": ("Method: sft (conversations); dpo, orpo, kto (preference data)", list(METHODS)),
    "start_adapter": ("Start from adapter (empty: the base model)", []),
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
    "beta": ("Beta (TRL's default 0.1; ORPO: the odds-ratio weight λ)", None),
    "loss_type": (
        "Loss type (empty: TRL's default, sigmoid for DPO, kto for KTO)",
        ["", *dict.fromkeys(t for types in LOSS_TYPES.values() for t in types)],
    ),
    "label_smoothing": ("Label smoothing (DPO: share of votes taken as flipped; 0: none)", None),
    "desirable_weight": ("KTO weight of good answers", None),
    "undesirable_weight": ("KTO weight of bad answers", None),
    "precision": ("Precision", ["auto", "fp32", "bf16"]),
    "quantization": ("Quantization", ["none", "4bit"]),
    "gradient_checkpointing": ("Gradient checkpointing", None),
    "threads": ("CPU threads (0: all)", None),
    "runs_on": ("Runs on: local (this machine) or ray (a Ray cluster)", list(RUNNERS)),
    "ray_address": ("Ray cluster's job server (empty: FTAPP_RAY_ADDRESS)", None),
    "num_workers": ("Ray Train workers (data parallel)", None),
    "cpus_per_worker": ("CPUs per Ray worker", None),
    "gpus_per_worker": ("GPUs per Ray worker (0: CPU)", None),
}


# How the page names each field in a refusal ("LoRA rank: must be ..."): its label, without
# the hint in brackets or after a colon.
LABELS = {field: label.split(" (")[0].split(":")[0] for field, (label, _) in FIELDS.items()}
LABELS |= {"dataset_version": "Dataset version", "base_model": "Base model"}

# Fields a preset leaves as they are: they say which adapter, not how to train it.
# Nor where it trains.
KEPT_BY_PRESETS = ("name", "start_adapter", "runs_on", "ray_address", "num_workers",
                   "cpus_per_worker", "gpus_per_worker")  # fmt: skip


def default_preset() -> str:
    return "GPU default" if has_nvidia_gpu() else "quick CPU demo"


def build_train_tab(services: Services) -> TabWiring:
    with gr.Row():
        with gr.Column(scale=2):
            form = _build_job_form(services)
        with gr.Column(scale=3):
            jobs = build_jobs_view(services)

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
            gr.update(choices=adapter_names(services)),
            gr.update(choices=job_choices(services), value=job_id),
        )

    @guarded(services, Role.ADMIN, LABELS)
    def queue(request: gr.Request, version_label: str, model: str, *values):
        config = _config_of(services, version_label, model, values)
        with services.db() as db:
            job = queue_job(db, services.settings, config, current_user(services, request).name)
            model_path = get_base_model(db, services.settings.models_dir, job.base_model).path
        gr.Info(f"Queued job #{job.id} ({job.name}).")
        # On a GPU shared with vLLM: say now if the job will wait for memory, and why.
        waiting = gpu_wait_reason(config, model_path, services.settings.vllm_gpu_memory)
        if waiting:
            gr.Warning(f"Job #{job.id} is {waiting}.")
        return job.id

    @guarded(services, Role.ADMIN)
    def list_jobs(request: gr.Request, job_id: int | None) -> dict:
        return gr.update(choices=job_choices(services), value=job_id)

    # The new job is shown at once, and the picker lists it by name.
    queued = form.queue.click(queue, form.fields, [jobs.selected], api_name="queue_job")
    queued.then(*jobs.redraw, api_name=False).then(
        list_jobs, [jobs.selected], [jobs.selected], api_name=False
    )
    pickers = [form.fields[0], form.fields[1], form.start_adapter]
    load = (load_choices, [jobs.selected], [*pickers, jobs.selected])
    return TabWiring(on_load=(load,), timers=(jobs.timer,))


@dataclass(frozen=True)
class JobForm:
    fields: list[Any]  # the dataset version, the base model, then every FIELDS input in order
    start_adapter: gr.Dropdown
    queue: gr.Button


def adapter_names(services: Services) -> list[str]:
    """What a job can start from: nothing (the base model), or any adapter or checkpoint."""
    with services.db() as db:
        return ["", *(v.name for v in job_store.list_variants(db))]


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
    with gr.Row():
        version = gr.Dropdown(label="Dataset version", choices=[], allow_custom_value=True,
                              elem_id="ft-train-version")  # fmt: skip
        base_model = gr.Dropdown(label="Base model", choices=[], allow_custom_value=True,
                                 elem_id="ft-train-base")  # fmt: skip
    # What the job is comes first, with the button that queues it; the hyperparameters the
    # preset filled in wait, folded, below (they were 2,500 px of form above the button).
    inputs: dict[str, Any] = {}
    with gr.Row():
        preset_name = gr.Dropdown(list(PRESETS), value=default_preset(), label="Preset",
                                  elem_id="ft-train-preset")  # fmt: skip
        inputs["method"] = _input("method", defaults)
    with gr.Row():
        inputs["start_adapter"] = _input("start_adapter", defaults)
        inputs["name"] = _input("name", defaults)
    if services.settings.ray_address and not services.settings.demo:
        # A cluster is set up: where the job trains is part of what it is.
        with gr.Row():
            inputs["runs_on"] = _input("runs_on", defaults)
            inputs["num_workers"] = _input("num_workers", defaults)
        gr.Markdown(f"ray: the Ray cluster at `{services.settings.ray_address}` "
                    "(FTAPP_RAY_ADDRESS); the adapter comes back here when it ends.")  # fmt: skip
    with gr.Row():
        queue_button = gr.Button("Queue job", variant="primary", elem_id="ft-queue")
        yaml_button = gr.Button("Show config as YAML")
    gr.Markdown(
        "DPO and ORPO learn from pairs (a chosen and a rejected answer), KTO from answers "
        "labelled good or bad too. They want a lower learning rate than SFT: the preference "
        "presets use 5e-5 on CPU and 5e-6 on GPU (2e-4 in the quick demo, to show an effect in "
        "30 steps). The usual recipe starts DPO from an SFT adapter; its reference is that "
        "starting point, with this training disabled."
    )
    with gr.Accordion("Hyperparameters (set by the preset; open to change them)", open=False,
                      elem_id="ft-train-hyperparameters"):  # fmt: skip
        for field in FIELDS:
            if field not in inputs:
                inputs[field] = _input(field, defaults)
    field_inputs = [inputs[field] for field in FIELDS]  # the order the handlers take them in
    yaml_view = gr.Code(language="yaml", label="Config", visible=False)
    yaml_file = gr.File(label="Config YAML", visible=False)

    @guarded(services, Role.ADMIN)
    def apply_preset(request: gr.Request, name: str | None):
        """The preset's values, TrainConfig's defaults for the rest; the adapter's name and
        what it starts from are the user's choice, not the preset's, and stay."""
        if name not in PRESETS:
            raise ValidationError(f"Choose a preset: {', '.join(PRESETS)}.")
        values = dataclasses.asdict(TrainConfig(dataset_version="-", **PRESETS[name]))
        return [gr.skip() if field in KEPT_BY_PRESETS else values[field] for field in FIELDS]

    # The request comes first: the hyperparameters follow as *values, in FIELDS order.
    @guarded(services, Role.ADMIN, LABELS)
    def show_yaml(request: gr.Request, version_label: str, model: str, *values):
        config = _config_of(services, version_label, model, values)
        name = f"train-{config.dataset_version.replace('@', '-')}.yaml"
        out = download_path(current_user(services, request), name)
        out.write_text(config.to_yaml())
        return gr.update(value=config.to_yaml(), visible=True), gr.update(value=str(out),
                                                                         visible=True)  # fmt: skip

    fields = [version, base_model, *field_inputs]
    start_adapter = field_inputs[list(FIELDS).index("start_adapter")]
    fresh_choices_on_focus(services, version, lambda: version_labels(services), "train_versions")
    fresh_choices_on_focus(services, start_adapter, lambda: adapter_names(services),
                           "train_start_adapters")  # fmt: skip
    gr.on([preset_name.change], apply_preset, [preset_name], field_inputs, api_name="train_preset")
    yaml_button.click(show_yaml, fields, [yaml_view, yaml_file], api_name="train_config_yaml")
    return JobForm(fields, start_adapter, queue_button)


def _config_of(services: Services, version_label: str, model: str, values: tuple) -> TrainConfig:
    if not version_label:
        if version_labels(services):
            raise ValidationError("dataset_version: choose one of the frozen versions")
        raise ValidationError("dataset_version: none is frozen yet; freeze one in the Data tab")
    raw = {"dataset_version": version_label, "base_model": model}
    raw.update(zip(FIELDS, values, strict=True))
    return config_from_dict(raw)


def _input(field: str, defaults: dict[str, Any]):
    label, choices = FIELDS[field]
    value = defaults[field]
    if choices is not None:
        # Custom values let API clients name any adapter; check_config checks them.
        return gr.Dropdown(choices or [""], value=value, label=label,
                           allow_custom_value=not choices, elem_id=f"ft-train-{field}")  # fmt: skip
    if isinstance(value, bool):
        return gr.Checkbox(value=value, label=label)
    if isinstance(value, int):
        return gr.Number(value=value, label=label, precision=0)
    if isinstance(value, float):
        return gr.Number(value=value, label=label)
    return gr.Textbox(value=value, label=label)
