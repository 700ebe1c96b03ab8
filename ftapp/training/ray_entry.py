"""A job's training on a Ray cluster: `python -m ftapp.training.ray_entry`, the entrypoint of
the Ray job that ftapp.training.ray_run submits, run in the job's folder (its working
directory: job.json and data.jsonl, ftapp.training.spec).

It trains through Ray Train: a `TorchTrainer` runs the same training code as a local job
(ftapp.training.child.train_and_report) on `num_workers` workers, data parallel, with Ray's
Transformers integration (`prepare_trainer`, and `RayTrainReportCallback` reporting every
checkpoint to the run's storage, `RunConfig(storage_path=FTAPP_RAY_STORAGE)`). A worker that
dies is replaced and the group goes on from the last checkpoint (`FailureConfig`); a new
attempt of the job, under the same run name, resumes from that storage too. Rank 0 emits the
events and publishes each checkpoint's adapter and the final adapter to
`<storage>/ftapp-job-<id>/ftapp/`, from where the worker copies them back.

Runs on the cluster: it needs ftapp's dependencies there (torch, transformers, peft, trl,
datasets, ray), never the database. Standard library and pyarrow at import time; Ray, torch
and transformers are imported in the functions that run on the cluster.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from ftapp.training.events import emit
from ftapp.training.spec import DATA_FILE, SPEC_FILE, read_spec

log = logging.getLogger("ftapp.training")

MAX_FAILURES = 2  # a worker lost this many times is retried from the last checkpoint
PUBLISHED = "ftapp"  # the folder of the run's storage that holds what it publishes


def published_uri(storage: str, name: str, relative: str = "") -> str:
    """Where the run publishes a file: `<storage>/<run name>/ftapp/<relative>`."""
    return f"{storage.rstrip('/')}/{name}/{PUBLISHED}/{relative}".rstrip("/")


def as_uri(location: str) -> str:
    """pyarrow reads URIs; a plain path is a local one."""
    return location if "://" in location else Path(location).resolve().as_uri()


def copy_tree(source: str, target: str) -> None:
    """Copy a folder between a local path and the storage (a path or an object store URI)."""
    import pyarrow.fs as pafs

    source_fs, source_path = pafs.FileSystem.from_uri(as_uri(source))
    target_fs, target_path = pafs.FileSystem.from_uri(as_uri(target))
    target_fs.create_dir(target_path, recursive=True)
    pafs.copy_files(source_path, target_path, source_filesystem=source_fs,
                    destination_filesystem=target_fs)  # fmt: skip


def main() -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ftapp.training.child import describe_failure

    folder = Path.cwd()
    spec = read_spec(folder)
    storage, name = os.environ["FTAPP_RAY_STORAGE"], os.environ["FTAPP_RUN_NAME"]
    config = spec.config
    resources = {"CPU": config.cpus_per_worker}
    if config.gpus_per_worker:
        resources["GPU"] = config.gpus_per_worker
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            "job": (folder / SPEC_FILE).read_text(encoding="utf-8"),
            "data": (folder / DATA_FILE).read_text(encoding="utf-8"),
            "storage": storage,
            "name": name,
        },
        scaling_config=ScalingConfig(
            num_workers=config.num_workers,
            use_gpu=config.gpus_per_worker > 0,
            resources_per_worker=resources,
        ),  # fmt: skip
        run_config=RunConfig(
            name=name,
            storage_path=storage if "://" in storage else str(Path(storage).resolve()),
            failure_config=FailureConfig(max_failures=MAX_FAILURES),
            checkpoint_config=CheckpointConfig(num_to_keep=2),  # what resuming needs
        ),
    )
    log.info("job #%d %s: Ray Train, %d workers, storage %s/%s", spec.job.id, spec.job.name,
             config.num_workers, storage, name)  # fmt: skip
    try:
        trainer.fit()
    except Exception as exc:  # every retry used up: the job fails with the first cause
        traceback.print_exc()
        emit("failed", reason=f"on the Ray cluster: {describe_failure(_root_cause(exc))}")
        return 1
    return 0


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def train_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the job's training, data parallel with the others."""
    import ray.train
    import torch.distributed as dist
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer

    from ftapp.training.child import train_and_report

    _log_to_output()
    context = ray.train.get_context()
    rank, local_rank = context.get_world_rank(), context.get_local_rank()
    storage, name = loop_config["storage"], loop_config["name"]
    # This node's folder for the run: its own per storage, so two ftapp homes sharing a
    # cluster don't share checkpoints of their job #1.
    tag = hashlib.sha256(storage.encode()).hexdigest()[:8]
    base = Path(tempfile.gettempdir()) / "ftapp-ray" / f"{name}-{tag}"
    folder = base / f"run-{rank}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPEC_FILE).write_text(loop_config["job"], encoding="utf-8")
    (folder / DATA_FILE).write_text(loop_config["data"], encoding="utf-8")
    spec = read_spec(folder)
    output = base / "output"
    config = spec.config
    if not config.threads:  # the worker's share of the node, not all its cores
        config = replace(config, threads=max(1, int(config.cpus_per_worker)))
    spec = replace(spec, job=replace(spec.job, output_dir=str(output)), config=config)

    if local_rank == 0:
        restore_checkpoint(ray.train.get_checkpoint(), output)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # every process of the node sees the restored checkpoint

    def publish(relative: str) -> None:
        publish_files(output / relative, published_uri(storage, name, relative))

    main = rank == 0
    train_and_report(
        spec, spec.rows(folder), publish=publish if main else None,
        callbacks=[RayTrainReportCallback() if main else _report_without_checkpoint()],
        prepare=prepare_trainer, is_main=main,
    )  # fmt: skip


def _log_to_output() -> None:
    """ftapp's log lines on the worker's output, which Ray forwards to the job's log."""
    logger = logging.getLogger("ftapp")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def restore_checkpoint(checkpoint: Any, output: Path) -> None:
    """Ray's latest checkpoint of the run (a retry or a new attempt), put back where the
    trainer resumes from: `output/checkpoint-<step>`."""
    if checkpoint is None:
        log.info(
            "Ray has no checkpoint of this run: it starts from %s",
            "the folder's last checkpoint" if any(output.glob("checkpoint-*")) else "step 0",
        )
        return
    with checkpoint.as_directory() as folder:
        source = Path(folder) / "checkpoint"  # RayTrainReportCallback's layout
        step = json.loads((source / "trainer_state.json").read_text())["global_step"]
        target = output / f"checkpoint-{step}"
        if not (target / "trainer_state.json").is_file():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target)
    log.info("restored Ray's checkpoint of step %d", step)


def publish_files(source: Path, target_uri: str) -> None:
    """Copy an adapter (a checkpoint's without what only resuming needs) to the storage."""
    from ftapp.training.trainer import RESUME_STATE_FILES

    with tempfile.TemporaryDirectory() as staging:
        files = Path(staging) / source.name
        shutil.copytree(source, files, ignore=shutil.ignore_patterns(*RESUME_STATE_FILES))
        copy_tree(str(files), target_uri)


def _report_without_checkpoint() -> Any:
    """Every worker reports at every save (Ray Train waits for all); rank 0's report carries
    the checkpoint, the others' none, as Ray's guide to checkpointing recommends."""
    import ray.train
    from transformers import TrainerCallback

    class ReportWithoutCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            ray.train.report(metrics={}, checkpoint=None)

    return ReportWithoutCheckpoint()


if __name__ == "__main__":
    sys.exit(main())
