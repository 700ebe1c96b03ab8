"""Training jobs as the web app and the CLI see them: check a config, queue it, cancel it,
read its progress. The work itself happens in the worker (ftapp.training.worker)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from ftapp.errors import Conflict, FtappError, ValidationError
from ftapp.models.registry import BaseModel, get_base_model
from ftapp.names import RESERVED_NAMES, check_model_name
from ftapp.records import DatasetKind, DatasetVersion, Job, JobStatus
from ftapp.settings import Settings
from ftapp.store import datasets as dataset_store
from ftapp.store import jobs as store
from ftapp.store import versions as version_store
from ftapp.store.db import write_transaction
from ftapp.training.config import TrainConfig
from ftapp.training.events import is_event_line


@dataclass(frozen=True)
class CheckedConfig:
    config: TrainConfig
    version: DatasetVersion
    base_model: BaseModel


def check_config(
    db: sqlite_utils.Database, settings: Settings, config: TrainConfig
) -> CheckedConfig:
    """Refuse, naming the field, a config that can't work; nothing is queued."""
    from ftapp.data.versions import resolve_version

    try:
        version = resolve_version(db, config.dataset_version)
    except FtappError as exc:
        raise ValidationError(f"dataset_version: {exc}") from None
    if version.n_train == 0:
        raise ValidationError(f"dataset_version: {version.label} has an empty train split")
    check_method(db, config, version)
    if settings.demo:
        check_demo_limits(settings, config, version)
    try:
        base_model = get_base_model(db, settings.models_dir, config.base_model)
    except FtappError as exc:
        raise ValidationError(f"base_model: {exc}") from None
    if config.start_adapter:
        check_start_adapter(db, config.start_adapter, base_model.name)
    if config.runs_on == "ray":
        check_ray(settings, config)
    if config.quantization == "4bit" and importlib.util.find_spec("bitsandbytes") is None:
        raise ValidationError("quantization: 4bit (QLoRA) needs a CUDA GPU with bitsandbytes")
    if config.name:
        check_model_name(config.name)
        if name_taken(db, config.name):
            raise Conflict(f"name: {config.name!r} is already used by another job or model")
    return CheckedConfig(config, version, base_model)


def check_method(db: sqlite_utils.Database, config: TrainConfig, version: DatasetVersion) -> None:
    """SFT learns conversations; DPO, ORPO and KTO learn preferences: each needs its kind of
    dataset, and DPO and ORPO need pairs (KTO learns from good/bad answers too)."""
    kind = dataset_store.get_dataset(db, version.dataset).kind
    if config.method == "sft" and kind == DatasetKind.PREFERENCE:
        raise ValidationError(
            f"method: {version.label} is preference data (chosen and rejected answers); train it "
            "with dpo, orpo or kto, or pick an SFT version for sft"
        )
    if config.is_preference and kind != DatasetKind.PREFERENCE:
        raise ValidationError(
            f"method: {config.method} learns from preference data, and {version.label} holds "
            "conversations; use sft, or pick a preference version (pairs or good/bad answers)"
        )
    if config.method in ("dpo", "orpo") and not version_store.count_pairs(db, version.id, "train"):
        raise ValidationError(
            f"method: {config.method} learns from pairs, and the train split of {version.label} "
            "has none (only answers labelled good or bad); use kto"
        )


def check_start_adapter(db: sqlite_utils.Database, name: str, base_model: str) -> None:
    """The starting adapter must exist, have its files, and be trained on this base model."""
    try:
        start = store.get_variant(db, name)
    except FtappError as exc:
        raise ValidationError(f"start_adapter: {exc}") from None
    if start.base_model != base_model:
        raise ValidationError(
            f"start_adapter: {start.name!r} was trained on {start.base_model}, not on "
            f"{base_model}; an adapter only works on its own base model"
        )
    if not (Path(start.path) / "adapter_config.json").is_file():
        raise ValidationError(f"start_adapter: {start.name!r} has no adapter files at {start.path}")


def check_ray(settings: Settings, config: TrainConfig) -> None:
    """A Ray job needs a cluster to go to and Ray's client here; the demo trains here only."""
    if settings.demo:
        raise ValidationError("runs_on: the demo trains on its own machine only")
    if not (config.ray_address or settings.ray_address):
        raise ValidationError(
            "runs_on: ray needs a cluster: set ray_address to its job server "
            "(like http://head:8265), or FTAPP_RAY_ADDRESS for every job"
        )
    if importlib.util.find_spec("ray") is None:
        raise ValidationError("runs_on: ray is not installed here: pip install 'ray[default]'")


def ray_address_of(settings: Settings, config: TrainConfig) -> str | None:
    """The job server a job goes to, or None for a job on this machine."""
    if config.runs_on != "ray":
        return None
    return config.ray_address or settings.ray_address


def check_demo_limits(settings: Settings, config: TrainConfig, version: DatasetVersion) -> None:
    """The public demo shares one free CPU among its visitors: a job there trains on few
    examples for a set number of steps (never "all epochs"), so every visitor's turn comes."""
    if version.n_train > settings.demo_max_examples:
        raise ValidationError(
            f"dataset_version: {version.label} has {version.n_train} training examples; the "
            f"demo trains on at most {settings.demo_max_examples} (FTAPP_DEMO_MAX_EXAMPLES)"
        )
    if not 1 <= config.max_steps <= settings.demo_max_steps:
        raise ValidationError(
            f"max_steps: the demo allows 1 to {settings.demo_max_steps} steps "
            f"(FTAPP_DEMO_MAX_STEPS), got {config.max_steps}; 0 (train for epochs) is off there"
        )


def demo_time_limit(settings: Settings, config: TrainConfig) -> TrainConfig:
    """The config a demo job runs with: its time limit at most FTAPP_DEMO_MAX_MINUTES (none
    set counts as over). Outside the demo the config is unchanged."""
    if not settings.demo or 0 < config.time_limit_minutes <= settings.demo_max_minutes:
        return config
    return dataclasses.replace(config, time_limit_minutes=float(settings.demo_max_minutes))


def name_taken(db: sqlite_utils.Database, name: str) -> bool:
    """Whether a job, a model variant or an arena prompt variant has this name: they share
    one namespace, so a name always means one thing. "base" and "production" are always
    taken: they name the base model and the promoted one."""
    return name in RESERVED_NAMES or store.name_in_use(db, name)


def queue_job(db: sqlite_utils.Database, settings: Settings, config: TrainConfig, user: str) -> Job:
    """Check the config and add the job to the queue; a worker picks it up."""
    with write_transaction(db):
        # Checked inside the transaction: two requests can't both take a free name.
        checked = check_config(db, settings, config)
        job_id = store.insert_job(
            db,
            {
                "name": config.name or "pending",
                "config_json": "{}",
                "dataset_version_id": checked.version.id,
                "base_model": checked.base_model.name,
                "output_dir": "",
                "log_path": "",
                "created_by": user,
            },
        )
        name = config.name or f"{checked.version.dataset}-v{checked.version.version}-job{job_id}"
        name = re.sub(r"[^A-Za-z0-9._-]", "-", name)
        if not config.name:
            # A job may have been given this very name by hand: its adapter variant (same
            # name) would be overwritten by ours.
            base, number = name, 1
            while name_taken(db, name):
                number += 1
                name = f"{base}-{number}"
        final = dataclasses.replace(demo_time_limit(settings, config), name=name)
        store.update_job(
            db,
            job_id,
            name=name,
            config_json=json.dumps(final.to_dict()),
            output_dir=str(settings.adapters_dir / f"job-{job_id}"),
            log_path=str(settings.logs_dir / f"job-{job_id}.log"),
            runner=final.runs_on,
            run_address=ray_address_of(settings, final),
        )
    return store.get_job(db, job_id)


def cancel_job(db: sqlite_utils.Database, job_id: int) -> Job:
    """A waiting job is cancelled at once; a running one is asked to stop (within seconds)."""
    with write_transaction(db):
        job = store.get_job(db, job_id)
        if job.status.is_finished:
            raise Conflict(f"job #{job_id} has already {job.status.value}")
        store.update_job(db, job_id, is_cancel_requested=1)
        if job.status != JobStatus.RUNNING:
            store.finish_job(db, job_id, JobStatus.CANCELLED, "cancelled before it started")
    return store.get_job(db, job_id)


def log_tail(job: Job, lines: int = 40) -> str:
    return tail_of_log(job.log_path, lines)


def tail_of_log(log_path: str, lines: int = 40) -> str:
    """The last `lines` lines of a child process's log, as a terminal would show them."""
    path = Path(log_path)
    if not log_path or not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 64_000))
        text = handle.read().decode("utf-8", errors="replace")
    # Progress bars redraw with carriage returns and cursor moves; keep what a terminal shows.
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    # split("\n"), not splitlines(): that splits at every "\r" too, so each redraw was a line.
    rows = text.rstrip("\n").split("\n")
    # The training events are for the worker; the log shown is what a person reads.
    shown = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in rows if not is_event_line(line)]
    return "\n".join(shown[-lines:])


def eta_seconds(job: Job, seconds_per_step: float | None) -> float | None:
    if not job.total_steps or not seconds_per_step or job.status != JobStatus.RUNNING:
        return None
    return max(0.0, (job.total_steps - job.step) * seconds_per_step)


def job_progress(db: sqlite_utils.Database, job_id: int) -> dict:
    """What the Train tab shows for a job: status, step, ETA, speed, losses, log tail."""
    job = store.get_job(db, job_id)
    metrics = store.job_metrics(db, job_id)
    train = [m for m in metrics if m["kind"] == "train"]
    evals = [m for m in metrics if m["kind"] == "eval"]
    seconds_per_step = None
    recent = train[-10:]  # the recent pace; a resume's downtime lies further back
    if len(recent) >= 2 and recent[-1]["step"] > recent[0]["step"]:
        elapsed = _seconds_between(recent[0]["created_at"], recent[-1]["created_at"])
        seconds_per_step = elapsed / (recent[-1]["step"] - recent[0]["step"])
    speeds = [m["tokens_per_second"] for m in train[-5:] if m["tokens_per_second"]]
    return {
        "job": job,
        "train": train,
        "eval": evals,
        "eta_seconds": eta_seconds(job, seconds_per_step),
        "tokens_per_second": sum(speeds) / len(speeds) if speeds else None,
        "last_loss": train[-1]["loss"] if train else None,
        "best_eval_loss": min((m["loss"] for m in evals), default=None),
        # DPO and ORPO: the share of validation pairs whose chosen answer is rewarded more.
        "eval_accuracy": next(
            (
                m["rewards_accuracy"]
                for m in reversed(evals)
                if m.get("rewards_accuracy") is not None
            ),
            None,
        ),  # fmt: skip
        "learning_rate": train[-1]["learning_rate"] if train else None,
        "log_tail": log_tail(job),
        "variants": store.list_variants(db, job_id=job_id),
    }


def _seconds_between(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
