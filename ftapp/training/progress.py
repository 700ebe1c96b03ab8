"""The trainer's link to the database: progress rows, heartbeats, cancel requests, and every
saved checkpoint registered as a model variant. Runs inside the training process."""

from __future__ import annotations

import threading
import time
from contextlib import closing
from pathlib import Path

from transformers import TrainerCallback

from ftapp.store import jobs as store
from ftapp.store.db import connect
from ftapp.timeutil import utc_now

HEARTBEAT_SECONDS = 5.0


class DatabaseProgress(TrainerCallback):
    """Writes one `job_metrics` row per log, keeps the job's heartbeat fresh, stops training
    at the next step when a cancel was requested, and registers checkpoints as they appear."""

    def __init__(self, db_path: Path, job_id: int, job_name: str, base_model: str):
        self.db_path = db_path
        self.job_id = job_id
        self.job_name = job_name
        self.base_model = base_model
        self.cancelled = False
        self.last_eval_loss: float | None = None
        self._last_tokens: tuple[float, float] | None = None  # (num_tokens, time)

    def on_train_begin(self, args, state, control, **kwargs):
        with closing(connect(self.db_path)) as db:
            # Resumed: the lost attempt's rows after the checkpoint would double the curve.
            store.delete_metrics_after(db, self.job_id, state.global_step)
            store.update_job(db, self.job_id, total_steps=state.max_steps, heartbeat_at=utc_now())

    def on_step_end(self, args, state, control, **kwargs):
        with closing(connect(self.db_path)) as db:
            store.update_job(db, self.job_id, step=state.global_step, epoch=state.epoch,
                             heartbeat_at=utc_now())  # fmt: skip
            if store.get_job(db, self.job_id).is_cancel_requested:
                self.cancelled = True
                control.should_training_stop = True
                control.should_save = False
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        with closing(connect(self.db_path)) as db:
            if "eval_loss" in logs:
                self.last_eval_loss = float(logs["eval_loss"])
                store.add_metric(db, self.job_id, "eval", state.global_step, epoch=state.epoch,
                                 loss=self.last_eval_loss, **rewards(logs, "eval_"))  # fmt: skip
            elif "loss" in logs:
                store.add_metric(
                    db, self.job_id, "train", state.global_step, epoch=state.epoch,
                    loss=float(logs["loss"]), learning_rate=logs.get("learning_rate"),
                    grad_norm=logs.get("grad_norm"),
                    tokens_per_second=self._tokens_per_second(logs.get("num_tokens")),
                    **rewards(logs),
                )  # fmt: skip

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not (folder / "adapter_model.safetensors").exists():
            return
        with closing(connect(self.db_path)) as db:
            store.add_variant(
                db,
                {
                    "name": f"{self.job_name}/step-{state.global_step}",
                    "kind": "checkpoint",
                    "base_model": self.base_model,
                    "path": str(folder),
                    "job_id": self.job_id,
                    "step": state.global_step,
                    "eval_loss": self.last_eval_loss,
                    "is_best": 0,
                },
            )

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


class Heartbeat:
    """A background beat for the stretches without steps (loading, evaluation, saving), so a
    long evaluation is not taken for a dead worker."""

    def __init__(self, db_path: Path, job_id: int, every: float = HEARTBEAT_SECONDS):
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(db_path, job_id, every), daemon=True, name="heartbeat"
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self, db_path: Path, job_id: int, every: float) -> None:
        while not self._stop.wait(every):
            with closing(connect(db_path)) as db:
                store.update_job(db, job_id, heartbeat_at=utc_now())
