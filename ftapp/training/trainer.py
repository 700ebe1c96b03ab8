"""Building and running the TRL trainer of one job (methods.py says which, per method): data
from the frozen version, the base model, the LoRA adapter (new, or the starting adapter to go
on training), the machine's settings, resume from the last checkpoint, and the adapter folder
with its metadata at the end."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftapp.records import DatasetVersion, Job
from ftapp.training.config import TrainConfig
from ftapp.training.lm_head import use_label_only_lm_head
from ftapp.training.methods import method_arguments, trainer_classes, training_rows
from ftapp.training.templates import training_template_for

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
METADATA_FILE = "ftapp-adapter.json"


@dataclass(frozen=True)
class Machine:
    device: str  # "cuda" or "cpu"
    bf16: bool
    threads: int


def pick_machine(config: TrainConfig) -> Machine:
    import torch

    cuda = torch.cuda.is_available()
    if config.precision == "bf16":
        bf16 = True
    elif config.precision == "fp32":
        bf16 = False
    else:  # auto: bf16 where the hardware does it natively
        bf16 = torch.cuda.is_bf16_supported() if cuda else _cpu_has_bf16()
    threads = config.threads or os.cpu_count() or 1
    return Machine("cuda" if cuda else "cpu", bf16, threads)


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def train(
    job: Job,
    config: TrainConfig,
    version: DatasetVersion,
    rows: list[dict[str, Any]],
    base_model_path: Path,
    callbacks: list[Any],
    start_adapter_path: Path | None = None,
    prepare: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """Train the job's adapter; returns the trainer's final metrics and the best checkpoint.
    With `start_adapter_path` the job goes on training that adapter (its LoRA settings);
    `prepare` wraps the trainer before it trains (Ray Train's prepare_trainer)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, EarlyStoppingCallback

    machine = pick_machine(config)
    torch.set_num_threads(machine.threads)
    torch.manual_seed(config.seed)

    train_rows = training_rows(config.method, rows, "train")
    eval_rows = training_rows(config.method, rows, "validation")
    evaluate = bool(eval_rows) and config.eval_steps > 0
    if config.eval_steps and not eval_rows:
        log.warning(
            "%s has no validation examples: no evaluation, no early stopping", version.label
        )
    last = last_complete_checkpoint(job.output_dir)
    if last and is_final_checkpoint(last):
        # Killed after the last step's checkpoint: nothing is left to train. Resumed from
        # there, transformers would train one step past max_steps (it checks the step count
        # only after a step, unless max_steps is a whole number of epochs).
        log.info("%s is the last step's: the adapter is made from it", last)
        return finished_outcome(job, Path(last), evaluate, machine)

    tokenizer = AutoTokenizer.from_pretrained(str(base_model_path))
    inference_template = tokenizer.chat_template
    twin = training_template_for(inference_template)
    if config.method == "sft" and config.assistant_only_loss and twin:
        # SFT's assistant-only loss needs a template that marks the assistant turns; the
        # preference trainers split prompt from answer themselves.
        tokenizer.chat_template = twin
    if tokenizer.pad_token is None:  # the preference trainers pad pairs to one length
        tokenizer.pad_token = tokenizer.eos_token

    model_kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if machine.bf16 else torch.float32}
    if config.quantization == "4bit":
        from transformers import BitsAndBytesConfig

        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16 if machine.bf16 else torch.float16,
        )  # fmt: skip
    if machine.device == "cpu" and machine.bf16:
        # Weights stay fp32 on CPU; autocast does the matrix products in bf16.
        model_kwargs["dtype"] = torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(base_model_path), **model_kwargs)
    peft_config = None
    if start_adapter_path:
        # The adapter goes on training. DPO and KTO then keep a frozen copy of it as their
        # reference ("ref" adapter: the starting point, not a second model in memory).
        model = PeftModel.from_pretrained(model, str(start_adapter_path), is_trainable=True)
    else:
        # A new adapter: the reference is the base model, the adapter disabled.
        peft_config = lora_config(config, LoraConfig)

    save_steps = config.save_steps
    if evaluate and save_steps:
        # The best checkpoint is chosen at evaluations, so saves must fall on them.
        save_steps = config.eval_steps * max(1, math.ceil(save_steps / config.eval_steps))
    config_class, trainer_class = trainer_classes(config.method)
    args = config_class(
        output_dir=job.output_dir,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.scheduler,
        warmup_steps=config.warmup_ratio,  # below 1: a ratio of the total steps
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=1,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=config.eval_steps if evaluate else None,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        load_best_model_at_end=evaluate and bool(save_steps),
        metric_for_best_model="eval_loss" if evaluate else None,
        greater_is_better=False if evaluate else None,
        # Set for every method: TRL's preference configs default both to True.
        bf16=machine.bf16,
        gradient_checkpointing=config.gradient_checkpointing,
        use_cpu=machine.device == "cpu",
        report_to="none",
        disable_tqdm=True,  # the log file gets one line per step instead of progress bars
        dataloader_num_workers=0,
        **method_arguments(config),
    )
    if config.early_stopping_patience and evaluate:
        callbacks = [*callbacks, EarlyStoppingCallback(config.early_stopping_patience)]
    time_limit = None
    if config.time_limit_minutes:
        time_limit = time_limit_callback(config.time_limit_minutes)
        callbacks = [*callbacks, time_limit]
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if evaluate else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    if machine.device == "cpu":
        # TRL's fused LM head has no fast path without Triton: score only the labels (lm_head.py).
        model = trainer.model
        use_label_only_lm_head(model.get_base_model() if isinstance(model, PeftModel) else model)
    if prepare:
        trainer = prepare(trainer)
    # The data is tokenized by now: saved checkpoints carry the model's own template again.
    tokenizer.chat_template = inference_template
    if last:
        log.info("resuming from %s", last)
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=last)
    metrics = dict(result.metrics)
    metrics["wall_seconds"] = time.monotonic() - started
    metrics["resumed_from"] = Path(last).name if last else None
    # TrainOutput keeps the step apart from its metrics; the adapter variant records it.
    metrics["global_step"] = result.global_step
    # The job succeeds either way; this says its adapter is from fewer steps than planned.
    metrics["stopped_at_time_limit"] = (
        time_limit is not None and time_limit.stopped_at_step is not None
    )
    if evaluate:
        best_metric = trainer.state.best_metric if args.load_best_model_at_end else None
        metrics["eval_loss"] = final_eval_loss(best_metric, trainer.state.log_history)
    best = trainer.state.best_model_checkpoint
    adapter_dir = Path(job.output_dir) / ADAPTER_DIR
    trainer.save_model(str(adapter_dir))
    drop_reference_copy(adapter_dir)
    return {"metrics": metrics, "best_checkpoint": best, "adapter_dir": str(adapter_dir),
            "machine": machine.__dict__}  # fmt: skip


def lora_config(config: TrainConfig, lora_config_class: type) -> Any:
    targets = config.target_modules.strip()
    return lora_config_class(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear" if targets == "all-linear" else
        [name.strip() for name in targets.split(",") if name.strip()],
        task_type="CAUSAL_LM",
    )  # fmt: skip


def drop_reference_copy(adapter_dir: Path) -> None:
    """DPO and KTO, started from an adapter, train beside a frozen copy of it named "ref",
    and the save writes it to a subfolder; the adapter a job makes is the trained one only."""
    shutil.rmtree(adapter_dir / "ref", ignore_errors=True)


def time_limit_callback(minutes: float) -> Any:
    """A TrainerCallback that ends training at the first step end after `minutes` of wall time
    since train begin. Training then finishes as usual (the adapter is saved, the job
    succeeds); `stopped_at_step` says where it stopped, or stays None."""
    from transformers import TrainerCallback  # here, not at the top: heavy imports are lazy

    class TimeLimit(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.monotonic()
            self.stopped_at_step: int | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            # Counted from here: loading the model and the data is not training time.
            self.started = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            over = time.monotonic() - self.started >= minutes * 60
            if on_any_process(over, args.device) and self.stopped_at_step is None:
                self.stopped_at_step = state.global_step
                control.should_training_stop = True
                log.info("time limit of %g minutes reached: stopping at step %d of %d",
                         minutes, state.global_step, state.max_steps)  # fmt: skip
            return control

    return TimeLimit()


def on_any_process(flag: bool, device: Any) -> bool:
    """Whether `flag` is true on any training process. Under `accelerate launch` every GPU's
    process keeps its own clock; one stopping a step before the others would leave them
    waiting for it forever, so they all stop when the first one's time is up."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest checkpoint that can be resumed from. The trainer writes trainer_state.json
    last, so a kill in the middle of a save leaves a folder without it, and resuming from that
    folder fails every attempt (transformers' get_last_checkpoint would pick it)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    complete = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if (match := re.fullmatch(r"checkpoint-(\d+)", path.name))
        and (path / "trainer_state.json").is_file()
    ]
    return str(max(complete)[1]) if complete else None


def is_final_checkpoint(checkpoint: str) -> bool:
    """Whether the checkpoint was saved at the last step the job was to train."""
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    return 0 < state["max_steps"] <= state["global_step"]


# What a checkpoint holds only to resume from; the rest is the adapter save_model writes.
RESUME_STATE_FILES = ("optimizer.pt", "scheduler.pt", "rng_state*.pth", "trainer_state.json")


def finished_outcome(job: Job, checkpoint: Path, evaluate: bool, machine: Machine) -> dict:
    """`train`'s outcome for a job whose training ended at `checkpoint`: the final adapter is
    the best checkpoint where validation chose one (load_best_model_at_end), else this one, and
    the metrics are read from the trainer state saved with it."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    best = state.get("best_model_checkpoint")
    adapter_dir = Path(job.output_dir) / ADAPTER_DIR
    shutil.rmtree(adapter_dir, ignore_errors=True)  # a save the kill cut short
    source = Path(best) if evaluate and best else checkpoint
    shutil.copytree(source, adapter_dir, ignore=shutil.ignore_patterns(*RESUME_STATE_FILES))
    drop_reference_copy(adapter_dir)
    history = state["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    metrics: dict[str, Any] = {
        "train_loss": sum(losses) / len(losses) if losses else None,
        "epoch": state["epoch"],
        "wall_seconds": 0.0,
        "resumed_from": checkpoint.name,
        "global_step": state["global_step"],
        "stopped_at_time_limit": False,
    }
    if evaluate:
        metrics["eval_loss"] = final_eval_loss(state.get("best_metric") if best else None, history)
    return {"metrics": metrics, "best_checkpoint": best, "adapter_dir": str(adapter_dir),
            "machine": machine.__dict__}  # fmt: skip


def final_eval_loss(best_metric: float | None, log_history: list[dict]) -> float | None:
    """The final adapter's validation loss: the best checkpoint's where validation chose one
    (load_best_model_at_end), else the last evaluation's (no checkpoints to choose from)."""
    if best_metric is not None:
        return best_metric
    losses = [entry["eval_loss"] for entry in log_history if "eval_loss" in entry]
    return losses[-1] if losses else None


def write_metadata(
    adapter_dir: Path,
    job: Job,
    config: TrainConfig,
    version: DatasetVersion,
    base_model_path: Path,
    outcome: dict[str, Any],
    start_adapter_path: Path | None = None,
) -> None:
    """What the adapter is, next to it: base model, data, method and starting adapter, config,
    results, timings."""
    (adapter_dir / "config.yaml").write_text(config.to_yaml())
    (adapter_dir / METADATA_FILE).write_text(
        json.dumps(
            {
                "name": job.name,
                "job_id": job.id,
                "base_model": job.base_model,
                "base_model_path": str(base_model_path),
                "dataset_version": version.label,
                "dataset_content_hash": version.content_hash,
                "method": config.method,
                "start_adapter": (
                    {"name": config.start_adapter, "path": str(start_adapter_path)}
                    if config.start_adapter
                    else None
                ),
                "examples": {"train": version.n_train, "validation": version.n_validation},
                "config": config.to_dict(),
                "metrics": outcome["metrics"],
                "best_checkpoint": outcome["best_checkpoint"],
                "machine": outcome["machine"],
            },
            indent=2,
            default=str,
        )
    )
