"""Training events (ftapp.training.events) turned into the rows the Train tab, the CLI and
the Playground read: the job's progress, its curves, its checkpoints and adapter as model
variants, how it ended. Run by the worker, for a run on this machine or on a Ray cluster
alike; `local_path` says where a file an event names is on this machine (a Ray run copies
it back from the cluster's storage first).

Each batch of events is recorded in one transaction with the job's event_offset (how much of
the run's output has been read), so a worker that dies between two batches leaves nothing
half-recorded, and the worker that takes the job over starts where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlite_utils

from ftapp.records import Job, JobStatus
from ftapp.store import jobs as store
from ftapp.store.db import write_transaction
from ftapp.timeutil import utc_now

log = logging.getLogger(__name__)

METRIC_FIELDS = ("learning_rate", "grad_norm", "tokens_per_second", "rewards_chosen",
                 "rewards_rejected", "rewards_margin", "rewards_accuracy")  # fmt: skip


def record_events(
    db: sqlite_utils.Database,
    job: Job,
    events: list[dict[str, Any]],
    new_offset: int,
    local_path: Callable[[str], Path],
) -> bool:
    """Record `events` of `job`'s run and move its event_offset to `new_offset`, together.
    True once the run has ended (a `finished` or `failed` event)."""
    # Files first (a Ray run's copies can take a while): the transaction stays short.
    paths = {event["path"]: local_path(event["path"]) for event in events
             if event["event"] == "checkpoint"}  # fmt: skip
    for event in events:
        if event["event"] == "finished":
            paths[event["adapter"]] = local_path(event["adapter"])
            if event.get("best_checkpoint"):
                paths[event["best_checkpoint"]] = local_path(event["best_checkpoint"])
    ended = False
    with write_transaction(db):
        for event in events:
            ended = _record(db, job, event, paths) or ended
        store.update_job(db, job.id, event_offset=new_offset, heartbeat_at=utc_now())
    return ended


def _record(db: sqlite_utils.Database, job: Job, event: dict[str, Any], paths: dict) -> bool:
    kind = event["event"]
    if kind == "started":
        # Resumed: the lost attempt's rows after the checkpoint would double the curve.
        store.delete_metrics_after(db, job.id, event["step"])
        store.update_job(db, job.id, total_steps=event["total_steps"], step=event["step"])
    elif kind == "step":
        store.update_job(db, job.id, step=event["step"], epoch=event["epoch"])
        store.add_metric(db, job.id, "train", event["step"], epoch=event["epoch"],
                         loss=event["loss"], **_values(event))  # fmt: skip
    elif kind == "evaluation":
        store.add_metric(db, job.id, "eval", event["step"], epoch=event["epoch"],
                         loss=event["loss"], **_values(event))  # fmt: skip
    elif kind == "checkpoint":
        store.add_variant(db, {
            "name": f"{job.name}/step-{event['step']}", "kind": "checkpoint",
            "base_model": job.base_model, "path": str(paths[event["path"]]), "job_id": job.id,
            "step": event["step"], "eval_loss": event.get("eval_loss"), "is_best": 0,
        })  # fmt: skip
    elif kind == "finished":
        _record_finished(db, job, event, paths)
        return True
    elif kind == "failed":
        store.finish_job(db, job.id, JobStatus.FAILED, event["reason"])
        return True
    return False


def _record_finished(db: sqlite_utils.Database, job: Job, event: dict, paths: dict) -> None:
    metrics = event["metrics"]
    if event.get("best_checkpoint"):
        store.mark_best_variant(db, job.id, str(paths[event["best_checkpoint"]]))
    store.add_variant(db, {
        "name": job.name, "kind": "adapter", "base_model": job.base_model,
        "path": str(paths[event["adapter"]]), "job_id": job.id,
        "step": metrics.get("global_step") or None, "eval_loss": metrics.get("eval_loss"),
        "is_best": 0,
    })  # fmt: skip
    store.update_job(db, job.id, metrics=metrics)
    if event.get("cancelled"):
        step = store.get_job(db, job.id).step
        store.finish_job(db, job.id, JobStatus.CANCELLED,
                         f"cancelled at step {step}; checkpoints and the adapter so far are "
                         "kept")  # fmt: skip
    else:
        store.finish_job(db, job.id, JobStatus.SUCCEEDED)


def _values(event: dict[str, Any]) -> dict[str, Any]:
    return {name: event[name] for name in METRIC_FIELDS if event.get(name) is not None}
