"""Where a job's training runs, as the worker sees it: a `Run` starts it, says whether it is
still going, hands over its output (where the events are), asks it to stop, and says where
a file it made is on this machine. Two kinds: `LocalRun`, a child process here (this module),
and `RayRun`, a Ray job on a cluster (ftapp.training.ray_run). The worker follows either the
same way (ftapp.training.worker), so the Train tab, the CLI and the fault handling don't know
where a job ran.

A run can be started, or attached to: a worker that takes over the job of a worker that died
follows the same child process or Ray job, never a second one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import closing, suppress
from pathlib import Path
from typing import NamedTuple, Protocol

from ftapp.models.registry import get_base_model
from ftapp.processes import exit_reason, signal_group, stop_process_group
from ftapp.records import Job
from ftapp.settings import Settings
from ftapp.store import jobs as store
from ftapp.store import versions as version_store
from ftapp.store.db import connect
from ftapp.training.config import config_from_dict
from ftapp.training.events import CANCEL_FILE, complete_lines
from ftapp.training.spec import RunSpec, write_spec

RUN_FOLDER = "run"  # in the job's output folder: what the run trains (ftapp.training.spec)
CHILD_MODULE = "ftapp.training.child"


class Ending(NamedTuple):
    """How a run ended, when it told nothing itself (no `finished` or `failed` event)."""

    reason: str
    resumable: bool  # True: the job is resumed from its last checkpoint; False: it fails


class Run(Protocol):
    def start(self) -> None:
        """Start the run and record on the job how to find it again."""

    def ended(self) -> Ending | None:
        """None while it runs; once it has ended, how."""

    def read_output(self, offset: int) -> tuple[str, int]:
        """Its output from `offset` on, in whole lines, and the offset after them."""

    @property
    def reachable(self) -> bool:
        """Whether its state can be known now (a Ray job server may not answer for a while):
        the job's heartbeat is beaten only while it is."""

    def cancel(self) -> None:
        """Ask it to stop; a local run stops at the next step and keeps its adapter."""

    def kill(self) -> None:
        """Stop it now (a cancel that was not heard)."""

    def stop_for_worker_exit(self) -> bool:
        """The worker is stopping: stop the run if it can't go on without the worker. True if
        it was stopped (it resumes later), False if it goes on (a Ray job: it is followed
        again by the next worker)."""

    def local_path(self, relative: str) -> Path:
        """Where the file or folder the run made at `relative` is on this machine."""


def run_folder(job: Job) -> Path:
    return Path(job.output_dir) / RUN_FOLDER


def write_run_folder(settings: Settings, job: Job) -> Path:
    """The run's folder for `job` as claimed now (its attempt): job.json and data.jsonl."""
    folder = run_folder(job)
    with closing(connect(settings.db_path)) as db:
        config = config_from_dict(job.config)
        version = version_store.get_version_by_id(db, job.dataset_version_id)
        base_model = get_base_model(db, settings.models_dir, job.base_model)
        start = store.get_variant(db, config.start_adapter).path if config.start_adapter else None
        spec = RunSpec(job, config, version, str(base_model.path), start)
        write_spec(folder, spec, version_store.version_rows(db, version.id))
    return folder


def open_run(settings: Settings, job: Job, gpus: int = 1) -> Run:
    """The run of `job`, by where it trains (job.runner)."""
    if job.runner == "ray":
        from ftapp.training.ray_run import RayRun

        return RayRun(settings, job)
    return LocalRun(settings, job, gpus)


class LocalRun:
    """A child process on this machine, `python -m ftapp.training.child RUN_FOLDER`, in a
    process group of its own, its output appended to the job's log: the events are read back
    from the log, from the byte offset the job's attempt started at."""

    def __init__(self, settings: Settings, job: Job, gpus: int = 1):
        self.settings = settings
        self.job = job
        self.gpus = gpus
        self.process: subprocess.Popen | None = None
        self.pid = job.child_pid  # attached: the child a previous worker started

    def start(self) -> None:
        folder = write_run_folder(self.settings, self.job)
        (Path(self.job.output_dir) / CANCEL_FILE).unlink(missing_ok=True)
        log_path = Path(self.job.log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "FTAPP_HOME": str(self.settings.home),
               "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
        threads = self.job.config.get("threads") or 0
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        with open(log_path, "ab") as log_file:
            offset = log_file.tell()  # this attempt's events start here
            self.process = subprocess.Popen(
                child_command(folder, self.gpus),
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,  # its own process group: killed as a whole
            )  # fmt: skip
        self.pid = self.process.pid
        with closing(connect(self.settings.db_path)) as db:
            store.update_job(db, self.job.id, child_pid=self.pid, event_offset=offset)

    def ended(self) -> Ending | None:
        # A crash or a kill is resumed from the last checkpoint, up to MAX_ATTEMPTS times.
        if self.process is not None:
            code = self.process.poll()
            if code is None:
                return None
            return Ending(f"the training process ended with {exit_reason(code)}", True)
        if is_training_child(self.pid, run_folder(self.job)):
            return None
        return Ending("the training process ended while no worker followed it", True)

    def read_output(self, offset: int) -> tuple[str, int]:
        return read_log(self.job, offset)

    reachable = True  # a process of this machine

    def cancel(self) -> None:
        (Path(self.job.output_dir) / CANCEL_FILE).touch()

    def kill(self) -> None:
        self._stop()

    def stop_for_worker_exit(self) -> bool:
        self._stop()
        return True

    def _stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process, STOP_GRACE_SECONDS)
        else:  # attached: the child a previous worker started
            kill_training_child(self.job)

    def local_path(self, relative: str) -> Path:
        return output_path(self.job, relative)


STOP_GRACE_SECONDS = 10


def child_command(folder: Path, gpus: int = 1) -> list[str]:
    """The training process's command line: the same entry point on one device or several
    (data parallel through accelerate, one process per GPU)."""
    entry = ["-m", CHILD_MODULE, str(folder)]
    if gpus <= 1:
        return [sys.executable, *entry]
    launch = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(gpus)]
    return [sys.executable, *launch, *entry]


def output_path(job: Job, relative: str) -> Path:
    """Where a file a local run made is: its events name it relative to the output folder."""
    return Path(job.output_dir) / relative


def read_log(job: Job, offset: int) -> tuple[str, int]:
    """A local run's output: the job's log from byte `offset` on, in whole lines, and the
    offset after them."""
    try:
        with open(job.log_path, "rb") as handle:
            handle.seek(offset)
            chunk = complete_lines(handle.read())
    except FileNotFoundError:
        return "", offset
    return chunk.decode("utf-8", errors="replace"), offset + len(chunk)


def kill_training_child(job: Job) -> None:
    """Kill the process group of the job's training child if it still runs (an orphan whose
    worker died, or a child that would not stop)."""
    if is_training_child(job.child_pid, run_folder(job)):
        with suppress(ProcessLookupError):  # it may have ended since its cmdline was read
            signal_group(os.getpgid(job.child_pid), signal.SIGKILL)


def is_training_child(pid: int | None, folder: Path) -> bool:
    """Whether `pid` is alive and is the training process of the run in `folder` (a pid can be
    reused by an unrelated process once its process is gone)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return CHILD_MODULE.encode() in cmdline and str(folder).encode() in cmdline
