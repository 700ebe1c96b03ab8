"""The worker: `ftapp worker`. Claims queued jobs one at a time and runs each in its own child
process (its own process group, output to the job's log), so a crash or an out-of-memory kill
of a job never takes the worker down.

It also watches over jobs whose training process went silent: a running job whose heartbeat
is older than STALE_SECONDS (its worker and child were killed, the machine restarted) is
marked interrupted and later resumed from its last checkpoint, at most MAX_ATTEMPTS times.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import closing, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ftapp.records import Job, JobStatus
from ftapp.settings import Settings
from ftapp.store import jobs as store
from ftapp.store.db import connect

log = logging.getLogger(__name__)

STALE_SECONDS = 45
MAX_ATTEMPTS = 3
CANCEL_GRACE_SECONDS = 10
STOP_GRACE_SECONDS = 10


class Worker:
    def __init__(
        self, settings: Settings, *, device: str = "cpu", gpus: int = 1, poll_seconds: float = 2.0
    ):
        self.settings = settings
        self.device = device
        self.gpus = gpus  # above 1: one job spans the GPUs through `accelerate launch`
        self.poll_seconds = poll_seconds
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = threading.Event()

    def run_forever(self) -> None:
        log.info("worker %s on %s, database %s", self.worker_id, self.device, self.settings.db_path)
        while not self.stopping.is_set():
            try:
                ran = self.run_once()
            except Exception:  # a locked database, a full disk: log it, keep serving the queue
                log.exception("worker %s: error while looking for work", self.worker_id)
                ran = False
            if not ran:
                self.stopping.wait(self.poll_seconds)

    def run_once(self) -> bool:
        """Recover stale jobs, then run the next job if there is one. True if a job ran."""
        with closing(connect(self.settings.db_path)) as db:
            recover_stale_jobs(db)
            if self.device.startswith("cuda") and not self._next_job_fits(db):
                return False
            job = store.claim_next_job(db, self.worker_id, self.device)
        if job is None:
            return False
        self.run_job(job)
        return True

    def _next_job_fits(self, db) -> bool:
        """On a GPU shared with vLLM: whether the next job fits in the free memory now. If
        not, the job stays queued and says why (the Train tab shows it)."""
        from ftapp.models.registry import get_base_model
        from ftapp.training.config import config_from_dict
        from ftapp.training.gpu_memory import gpu_wait_reason

        job = store.next_queued_job(db)
        if job is None:
            return True
        index = int(self.device.partition(":")[2] or 0)
        model = get_base_model(db, self.settings.models_dir, job.base_model)
        config = config_from_dict(job.config)
        reason = gpu_wait_reason(config, model.path, self.settings.vllm_gpu_memory, index)
        if reason != job.waiting_reason:
            store.update_job(db, job.id, waiting_reason=reason)
        return reason is None

    def run_job(self, job: Job) -> None:
        log.info("job #%d %s: starting (attempt %d)", job.id, job.name, job.attempts)
        Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "FTAPP_HOME": str(self.settings.home),
            "TOKENIZERS_PARALLELISM": "false",
        }
        threads = job.config.get("threads") or 0
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        with open(job.log_path, "ab") as log_file:
            child = subprocess.Popen(
                child_command(job.id, self.gpus),
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,  # its own process group: killed as a whole
            )  # fmt: skip
        with closing(connect(self.settings.db_path)) as db:
            store.update_job(db, job.id, child_pid=child.pid)
        returncode = self._wait(job, child)
        self._settle(job, returncode)

    def _wait(self, job: Job, child: subprocess.Popen) -> int:
        cancel_seen_at = None
        while True:
            try:
                return child.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
            if self.stopping.is_set():
                log.info("job #%d: worker stopping, the job will resume later", job.id)
                return _terminate(child, STOP_GRACE_SECONDS)
            with closing(connect(self.settings.db_path)) as db:
                wanted = store.get_job(db, job.id).is_cancel_requested
            if wanted and cancel_seen_at is None:
                cancel_seen_at = time.monotonic()
            # The child stops by itself at the next step; a step stuck for too long is killed.
            if cancel_seen_at and time.monotonic() - cancel_seen_at > CANCEL_GRACE_SECONDS:
                return _terminate(child, STOP_GRACE_SECONDS)

    def _settle(self, job: Job, returncode: int) -> None:
        """Record how the job ended when its child could not (killed, crashed hard)."""
        with closing(connect(self.settings.db_path)) as db:
            current = store.get_job(db, job.id)
            if current.status != JobStatus.RUNNING:
                log.info("job #%d: %s", job.id, current.status.value)
                return
            if current.is_cancel_requested:
                reason = f"cancelled at step {current.step}; checkpoints are kept"
                store.finish_job(db, job.id, JobStatus.CANCELLED, reason)
            elif self.stopping.is_set():
                # Asked to stop (the app or the machine shutting down): not a failed attempt,
                # so it doesn't count towards MAX_ATTEMPTS.
                db.execute(
                    "UPDATE jobs SET status = 'interrupted', attempts = attempts - 1, error = ?, "
                    "child_pid = NULL WHERE id = ? AND status = 'running'",
                    ["the worker stopped; will resume from the last checkpoint", job.id],
                )
            else:
                _interrupt(
                    db, current, f"the training process ended with {exit_reason(returncode)}"
                )
        log.info("job #%d ended with %s", job.id, exit_reason(returncode))


def recover_stale_jobs(db, stale_seconds: float | None = None) -> list[int]:
    """Running jobs whose heartbeat stopped: interrupted (resumed later), or failed after
    MAX_ATTEMPTS. Returns their ids."""
    stale_seconds = STALE_SECONDS if stale_seconds is None else stale_seconds
    cutoff = (datetime.now(UTC) - timedelta(seconds=stale_seconds)).isoformat(
        timespec="milliseconds"
    )
    recovered = []
    for job in store.stale_running_jobs(db, cutoff):
        _kill_orphan(job)
        _interrupt(db, job, f"no heartbeat since {job.heartbeat_at} (its worker was lost)")
        recovered.append(job.id)
    return recovered


def _interrupt(db, job: Job, reason: str) -> None:
    if job.is_cancel_requested:
        # Claims skip cancel-requested jobs: left interrupted, it would never end.
        reason = f"cancelled at step {job.step}; checkpoints are kept ({reason})"
        store.finish_job(db, job.id, JobStatus.CANCELLED, reason)
        return
    if job.attempts >= MAX_ATTEMPTS:
        store.finish_job(
            db, job.id, JobStatus.FAILED, f"{reason}; gave up after {job.attempts} attempts"
        )
        return
    db.execute(
        "UPDATE jobs SET status = 'interrupted', error = ?, child_pid = NULL "
        "WHERE id = ? AND status = 'running'",
        [f"{reason}; will resume from the last checkpoint", job.id],
    )


def child_command(job_id: int, gpus: int = 1) -> list[str]:
    """The training process's command line: the same entry point on one device or several
    (data parallel through accelerate, one process per GPU)."""
    entry = ["-m", "ftapp.training.child", str(job_id)]
    if gpus <= 1:
        return [sys.executable, *entry]
    launch = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(gpus)]
    return [sys.executable, *launch, *entry]


def _terminate(child: subprocess.Popen, grace: float) -> int:
    """SIGTERM the child's process group, then SIGKILL after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(child.pid, sig)
        try:
            return child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return child.wait()


def _kill_orphan(job: Job) -> None:
    """A stale job's training process may still hang on this machine: end it before resuming."""
    if not job.child_pid:
        return
    try:
        cmdline = Path(f"/proc/{job.child_pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if b"ftapp.training.child" in cmdline and str(job.id).encode() in cmdline:
        with suppress(ProcessLookupError):
            os.killpg(os.getpgid(job.child_pid), signal.SIGKILL)


def exit_reason(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (often the out-of-memory killer)" if name == "SIGKILL" else ""
        return f"signal {name}{hint}"
    return f"exit status {returncode}"


def run_worker(
    settings: Settings, device: str = "cpu", gpus: int = 1, exit_with_parent: bool = False
) -> None:
    """`ftapp worker`: run until SIGTERM or Ctrl-C; a running job is stopped and resumes later.
    With exit_with_parent, also stop when the process that started it (the web app) is gone."""
    worker = Worker(settings, device=device, gpus=gpus)
    if exit_with_parent:
        parent = os.getppid()

        def watch_parent() -> None:
            while not worker.stopping.wait(2.0):
                if os.getppid() != parent:
                    worker.stopping.set()

        threading.Thread(target=watch_parent, daemon=True, name="parent-watch").start()

    def stop(signum, frame):
        worker.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run_forever()
