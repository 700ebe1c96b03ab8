"""The training process of one job: `python -m ftapp.training.child JOB_ID`.

Started by the worker in its own process group, with its output going to the job's log file.
It trains, registers the adapter and checkpoints, and records how the job ended. An exception
ends the job as failed with the reason; a kill leaves the job running with a heartbeat that
goes stale, and a worker resumes it from the last checkpoint.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import closing
from pathlib import Path

from ftapp.errors import FtappError
from ftapp.models.registry import get_base_model
from ftapp.processes import job_child_main
from ftapp.records import JobStatus
from ftapp.settings import load_settings
from ftapp.store import jobs as store
from ftapp.store import versions as version_store
from ftapp.store.db import connect
from ftapp.timeutil import utc_now
from ftapp.training.config import config_from_dict

log = logging.getLogger("ftapp.training")

EXIT_FAILED = 1
EXIT_CANCELLED = 3


def run_job(job_id: int) -> int:
    """Train one job to its end; returns the process exit status."""
    from ftapp.training.progress import DatabaseProgress, Heartbeat
    from ftapp.training.trainer import train, write_metadata

    settings = load_settings()
    with closing(connect(settings.db_path)) as db:
        job = store.get_job(db, job_id)
        if is_main_process():
            store.update_job(db, job_id, heartbeat_at=utc_now())
        config = config_from_dict(job.config)
        version = version_store.get_version_by_id(db, job.dataset_version_id)
        rows = list(version_store.version_rows(db, version.id))
        base_model = get_base_model(db, settings.models_dir, job.base_model)
        # The adapter to go on training, as it is now (a checkpoint or a final adapter).
        start = (
            Path(store.get_variant(db, config.start_adapter).path) if config.start_adapter else None
        )
    log.info("job #%d %s: %s of %s on %s%s (attempt %d)", job.id, job.name, config.method,
             version.label, base_model.name, f" from {config.start_adapter}" if start else "",
             job.attempts)  # fmt: skip

    if not is_main_process():  # another GPU's process: train, and leave the records to rank 0
        train(job, config, version, rows, base_model.path, [], start)
        return 0
    progress = DatabaseProgress(settings.db_path, job.id, job.name, base_model.name)
    with Heartbeat(settings.db_path, job.id):
        outcome = train(job, config, version, rows, base_model.path, [progress], start)
    adapter_dir = Path(outcome["adapter_dir"])
    write_metadata(adapter_dir, job, config, version, base_model.path, outcome, start)

    with closing(connect(settings.db_path)) as db:
        best = outcome["best_checkpoint"]
        if best:
            store.mark_best_variant(db, job.id, best)
        store.add_variant(
            db,
            {
                "name": job.name,
                "kind": "adapter",
                "base_model": base_model.name,
                "path": str(adapter_dir),
                "job_id": job.id,
                "step": outcome["metrics"].get("global_step") or None,
                "eval_loss": outcome["metrics"].get("eval_loss"),
                "is_best": 0,
            },
        )
        store.update_job(db, job.id, metrics=outcome["metrics"])
        if progress.cancelled:
            store.finish_job(db, job.id, JobStatus.CANCELLED,
                             f"cancelled at step {store.get_job(db, job.id).step}; "
                             "checkpoints and the adapter so far are kept")  # fmt: skip
            return EXIT_CANCELLED
        store.finish_job(db, job.id, JobStatus.SUCCEEDED)
    log.info("job #%d succeeded: %s", job.id, outcome["metrics"])
    return 0


def is_main_process() -> bool:
    """Under `accelerate launch` every GPU runs this entry point; only rank 0 writes."""
    return int(os.environ.get("RANK", "0")) == 0


def describe_failure(exc: BaseException) -> str:
    """A reason a person can read, for the job's error field."""
    name = type(exc).__name__
    if isinstance(exc, MemoryError) or "OutOfMemory" in name:
        return f"out of memory ({name}): lower batch_size or max_length, or use a smaller model"
    if isinstance(exc, FtappError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{name}: {text[0][:500]}" if text else name


def main(argv: list[str] | None = None) -> int:
    return job_child_main(argv, run_job, _record_failure, exit_failed=EXIT_FAILED)


def _record_failure(job_id: int, exc: BaseException) -> None:
    with closing(connect(load_settings().db_path)) as db:
        store.finish_job(db, job_id, JobStatus.FAILED, describe_failure(exc))


if __name__ == "__main__":
    sys.exit(main())
