"""The trainer's progress, told as events (ftapp.training.events): the start, every logged
step and evaluation, every saved checkpoint. Runs inside the training process, which never
opens the database. It also stops training at the next step when a cancel was asked for,
through a file the runner creates (the same on every process of a multi-GPU job)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

from ftapp.training.events import emit


class EventReporter(TrainerCallback):
    """Emits `started`, `step`, `evaluation` and `checkpoint` events from the main process,
    and stops training at the next step once `cancel_file` exists. `publish(relative_path)`
    is called for a saved checkpoint before its event (a Ray job copies it to its storage)."""

    def __init__(
        self,
        attempt: int,
        cancel_file: Path | None = None,
        publish: Callable[[str], None] | None = None,
        is_main: bool = True,
    ):
        self.attempt = attempt
        self.cancel_file = cancel_file
        self.publish = publish
        self.is_main = is_main
        self.cancelled = False
        self.last_eval_loss: float | None = None
        self._last_tokens: tuple[float, float] | None = None  # (num_tokens, time)

    def on_train_begin(self, args, state, control, **kwargs):
        if self.is_main:
            emit("started", step=state.global_step, total_steps=state.max_steps,
                 attempt=self.attempt)  # fmt: skip

    def on_step_end(self, args, state, control, **kwargs):
        from ftapp.training.trainer import on_any_process

        wanted = self.cancel_file is not None and self.cancel_file.exists()
        if on_any_process(wanted, args.device):
            self.cancelled = True
            control.should_training_stop = True
            control.should_save = False
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if not self.is_main:
            return
        if "eval_loss" in logs:
            self.last_eval_loss = float(logs["eval_loss"])
            emit("evaluation", step=state.global_step, epoch=state.epoch,
                 loss=self.last_eval_loss, **rewards(logs, "eval_"))  # fmt: skip
        elif "loss" in logs:
            emit(
                "step", step=state.global_step, epoch=state.epoch, loss=float(logs["loss"]),
                learning_rate=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"),
                tokens_per_second=self._tokens_per_second(logs.get("num_tokens")),
                **rewards(logs),
            )  # fmt: skip

    def on_save(self, args, state, control, **kwargs):
        if not self.is_main:
            return
        name = f"checkpoint-{state.global_step}"
        if not (Path(args.output_dir) / name / "adapter_model.safetensors").exists():
            return
        if self.publish:
            self.publish(name)
        emit("checkpoint", step=state.global_step, path=name, eval_loss=self.last_eval_loss)

    def _tokens_per_second(self, num_tokens: float | None) -> float | None:
        if num_tokens is None:
            return None
        now = time.monotonic()
        previous, self._last_tokens = self._last_tokens, (float(num_tokens), now)
        if previous is None or now <= previous[1] or num_tokens < previous[0]:
            return None
        return (float(num_tokens) - previous[0]) / (now - previous[1])


# TRL's names of what the preference trainers log, and the job_metrics columns they go to.
REWARDS = {
    "rewards/chosen": "rewards_chosen",
    "rewards/rejected": "rewards_rejected",
    "rewards/margins": "rewards_margin",
    "rewards/accuracies": "rewards_accuracy",  # DPO and ORPO: the share of pairs ranked right
}


def rewards(logs: dict, prefix: str = "") -> dict[str, float]:
    """The implicit rewards a DPO, ORPO or KTO log holds (none in an SFT one)."""
    return {column: float(logs[prefix + name]) for name, column in REWARDS.items()
            if logs.get(prefix + name) is not None}  # fmt: skip
