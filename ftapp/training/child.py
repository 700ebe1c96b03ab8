"""The training process of one run: `python -m ftapp.training.child RUN_FOLDER`.

It reads what to train from the run's folder (ftapp.training.spec), trains, and tells how it
goes as events on its output (ftapp.training.events): it never opens the database, so the
same code trains here, started by the worker with its output going to the job's log, and on
a Ray cluster (ftapp.training.ray_entry). An exception ends the run with a `failed` event
and its reason; a kill ends it with no event at all, and the worker resumes the job from its
last checkpoint.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ftapp.errors import FtappError
from ftapp.processes import job_child_main
from ftapp.training.events import emit
from ftapp.training.spec import RunSpec, read_spec

log = logging.getLogger("ftapp.training")

EXIT_FAILED = 1
EXIT_CANCELLED = 3


def run_folder(folder: Path) -> int:
    """Train the run in `folder` to its end; returns the process exit status."""
    from ftapp.training.events import CANCEL_FILE

    spec = read_spec(folder)
    cancel_file = Path(spec.job.output_dir) / CANCEL_FILE
    return train_and_report(spec, spec.rows(folder), cancel_file=cancel_file)


def train_and_report(
    spec: RunSpec,
    rows: list[dict[str, Any]],
    *,
    cancel_file: Path | None = None,
    publish: Callable[[str], None] | None = None,
    callbacks: Sequence[Any] = (),
    prepare: Callable[[Any], Any] | None = None,
    is_main: bool | None = None,
) -> int:
    """Train `spec`'s job on `rows` and emit its events; the end is a `finished` event naming
    the adapter (relative to the job's output folder). `publish(relative_path)` is called for
    each checkpoint and the adapter before their events (a Ray job copies them to storage);
    `prepare` wraps the trainer (Ray Train's prepare_trainer). Only the main process emits."""
    from ftapp.training.progress import EventReporter
    from ftapp.training.trainer import ADAPTER_DIR, train, write_metadata

    job, config = spec.job, spec.config
    main = is_main_process() if is_main is None else is_main
    start = Path(spec.start_adapter_path) if spec.start_adapter_path else None
    log.info("job #%d %s: %s of %s on %s%s (attempt %d)", job.id, job.name, config.method,
             spec.version.label, job.base_model,
             f" from {config.start_adapter}" if start else "", job.attempts)  # fmt: skip
    reporter = EventReporter(job.attempts, cancel_file, publish, is_main=main)
    outcome = train(job, config, spec.version, rows, Path(spec.base_model_path),
                    [*callbacks, reporter], start, prepare=prepare)  # fmt: skip
    if not main:  # another GPU's process: the main one reports
        return 0
    adapter_dir = Path(outcome["adapter_dir"])
    write_metadata(adapter_dir, job, config, spec.version, Path(spec.base_model_path), outcome,
                   start)  # fmt: skip
    if publish:
        publish(ADAPTER_DIR)
    best = outcome["best_checkpoint"]
    emit("finished", adapter=ADAPTER_DIR, best_checkpoint=Path(best).name if best else None,
         metrics=outcome["metrics"], cancelled=reporter.cancelled)  # fmt: skip
    log.info("job #%d %s: %s", job.id, "cancelled" if reporter.cancelled else "succeeded",
             outcome["metrics"])  # fmt: skip
    return EXIT_CANCELLED if reporter.cancelled else 0


def is_main_process() -> bool:
    """Under `accelerate launch` every GPU runs this entry point; only rank 0 reports."""
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


def report_failure(_folder: Path, exc: BaseException) -> None:
    if is_main_process():
        emit("failed", reason=describe_failure(exc))


def main(argv: list[str] | None = None) -> int:
    return job_child_main(argv, run_folder, report_failure, exit_failed=EXIT_FAILED, parse=Path)


if __name__ == "__main__":
    sys.exit(main())
