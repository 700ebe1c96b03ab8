"""`ftapp train`, `ftapp jobs ...` and `ftapp worker`: queue, watch and cancel training jobs;
run the worker."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ftapp.cli.common import print_result as _print
from ftapp.cli.common import services as _services
from ftapp.cli.common import user as _user


def add_training_commands(commands: Any) -> None:
    train = commands.add_parser("train", help="queue a training job from a YAML config")
    train.add_argument("config", type=Path, nargs="?", help="config YAML (see --preset)")
    train.add_argument("--preset", help="print a preset config as YAML and exit")
    train.add_argument("--dataset-version", default="DATASET@v1", help="for --preset")
    train.add_argument("--wait", action="store_true", help="wait until the job ends")
    train.add_argument("--json", action="store_true")
    train.set_defaults(handler=_train)

    jobs = commands.add_parser("jobs", help="training jobs").add_subparsers(title="actions")
    listing = jobs.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_jobs_list)
    show = jobs.add_parser("show", help="one job with its metrics")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_jobs_show)
    cancel = jobs.add_parser("cancel", help="cancel a job")
    cancel.add_argument("id", type=int)
    cancel.set_defaults(handler=_jobs_cancel)

    worker = commands.add_parser("worker", help="run training and export jobs from the queue")
    worker.add_argument("--device", default="cpu", help="cpu, or cuda:N (one job per device)")
    worker.add_argument("--gpus", type=int, default=1,
                        help="GPUs one job spans (accelerate launch, data parallel)")  # fmt: skip
    worker.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    worker.set_defaults(handler=_worker)


def _train(args: argparse.Namespace) -> int:
    import time

    from ftapp.errors import ValidationError
    from ftapp.store.jobs import get_job
    from ftapp.training.config import config_from_yaml, preset
    from ftapp.training.jobs import queue_job

    if args.preset:
        print(preset(args.preset, args.dataset_version).to_yaml(), end="")
        return 0
    if not args.config:
        raise ValidationError("give a config file (ftapp train --preset NAME prints one)")
    if not args.config.is_file():
        raise ValidationError(f"{args.config}: file not found")
    services = _services()
    config = config_from_yaml(args.config.read_text(encoding="utf-8"))
    with services.db() as db:
        job = queue_job(db, services.settings, config, _user())
    print(f"queued job #{job.id} {job.name}", file=sys.stderr)
    waited = 0
    while args.wait and not job.status.is_finished:
        time.sleep(2)
        waited += 2
        with services.db() as db:
            job = get_job(db, job.id)
        if waited == 30 and job.status.value == "queued":
            print("still queued after 30 s: is a worker running? (ftapp worker)", file=sys.stderr)
    _print(_job_dict(job), args.json, f"job #{job.id} {job.name}: {job.status.value}"
           + (f" ({job.error})" if job.error else ""))  # fmt: skip
    return 0 if not args.wait or job.status.value == "succeeded" else 1


def _jobs_list(args: argparse.Namespace) -> int:
    from ftapp.store.jobs import list_jobs

    with _services().db() as db:
        jobs = list_jobs(db)
    lines = [f"#{j.id}\t{j.status.value}\t{j.step}/{j.total_steps or '?'}\t{j.name}" for j in jobs]
    _print([_job_dict(j) for j in jobs], args.json, "\n".join(lines) or "no jobs yet")
    return 0


def _jobs_show(args: argparse.Namespace) -> int:
    from ftapp.store.jobs import get_job, job_metrics, list_variants

    with _services().db() as db:
        job = get_job(db, args.id)
        metrics = job_metrics(db, args.id)
        variants = list_variants(db, job_id=args.id)
    detail = {**_job_dict(job), "metrics_rows": metrics,
              "variants": [asdict(v) for v in variants]}  # fmt: skip
    where = f"Ray job {job.run_id} at {job.run_address}" if job.runner == "ray" else "here"
    text = (f"job #{job.id} {job.name}: {job.status.value}, step {job.step}/{job.total_steps}"
            + f"\n  runs on: {where}"
            + (f"\n  error: {job.error}" if job.error else "")
            + "".join(f"\n  variant {v.name}: {v.path}" for v in variants))  # fmt: skip
    _print(detail, args.json, text)
    return 0


def _jobs_cancel(args: argparse.Namespace) -> int:
    from ftapp.training.jobs import cancel_job

    with _services().db() as db:
        job = cancel_job(db, args.id)
    print(f"job #{job.id}: {job.status.value}" + (" (stopping)" if job.status.value == "running"
                                                  else ""))  # fmt: skip
    return 0


def _worker(args: argparse.Namespace) -> int:
    from ftapp.training.worker import run_worker

    run_worker(_services().settings, device=args.device, gpus=args.gpus,
               exit_with_parent=args.exit_with_parent)  # fmt: skip
    return 0


def _job_dict(job) -> dict:
    return asdict(job)
