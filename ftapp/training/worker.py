"""The worker: `ftapp worker`. Claims queued jobs one at a time and runs each in its own child
process (its own process group, output to the job's log), so a crash or an out-of-memory kill
of a job never takes the worker down.

It also watches over jobs whose training process went silent: a running job whose heartbeat
is older than STALE_SECONDS (its worker and child were killed, the machine restarted) is
marked interrupted and later resumed from its last checkpoint, at most MAX_ATTEMPTS times.

Beside the training jobs, a second thread runs export jobs (merges and Hub pushes, table
`export_jobs`) one at a time, each in a child process of its own (`ftapp.deploy.child`): they
run on the CPU, so a long training job does not hold them up. An export child beats its job's
heartbeat; one whose heartbeat went stale (its process died with its worker) is marked failed,
not retried: a merge is quick to queue again, and a push may have reached the Hub.
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

from ftapp.processes import signal_group, stop_process_group, watch_parent
from ftapp.records import Job, JobStatus
from ftapp.settings import Settings
from ftapp.store import export_jobs as export_store
from ftapp.store import jobs as store
from ftapp.store.db import connect
from ftapp.store.export_jobs import ExportJob

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
        exports = threading.Thread(target=self._serve, args=(self.run_export_once,),
                                   name="export-jobs", daemon=True)  # fmt: skip
        exports.start()
        self._serve(self.run_once)
        exports.join(timeout=STOP_GRACE_SECONDS + 10)

    def _serve(self, run_once) -> None:
        while not self.stopping.is_set():
            try:
                ran = run_once()
            except Exception:  # a locked database, a full disk: log it, keep serving the queue
                log.exception("worker %s: error while looking for work", self.worker_id)
                ran = False
            if not ran:
                self.stopping.wait(self.poll_seconds)

    def run_export_once(self) -> bool:
        """Fail stale export jobs, then run the next queued one if there is one. True if one
        ran."""
        with closing(connect(self.settings.db_path)) as db:
            recover_stale_export_jobs(db)
            job = export_store.claim_next_export_job(db, self.worker_id)
        if job is None:
            return False
        run_export_child(self.settings, job, self.stopping)
        return True

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
                return stop_process_group(child, STOP_GRACE_SECONDS)
            with closing(connect(self.settings.db_path)) as db:
                wanted = store.get_job(db, job.id).is_cancel_requested
            if wanted and cancel_seen_at is None:
                cancel_seen_at = time.monotonic()
            # The child stops by itself at the next step; a step stuck for too long is killed.
            if cancel_seen_at and time.monotonic() - cancel_seen_at > CANCEL_GRACE_SECONDS:
                return stop_process_group(child, STOP_GRACE_SECONDS)

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
                store.interrupt_job(
                    db, job.id, "the worker stopped; will resume from the last checkpoint",
                    count_attempt=False,
                )  # fmt: skip
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
    store.interrupt_job(db, job.id, f"{reason}; will resume from the last checkpoint")


def run_export_child(settings: Settings, job: ExportJob, stopping: threading.Event) -> None:
    """Run a claimed export job in its child process and wait for it; record how it ended
    when the child could not (killed, crashed hard, or `stopping` set: the worker stops)."""
    log.info("export job #%d: %s of %s", job.id, job.action.value, job.model)
    Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FTAPP_HOME": str(settings.home), "TOKENIZERS_PARALLELISM": "false"}
    with open(job.log_path, "ab") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "ftapp.deploy.child", str(job.id)],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,  # its own process group: killed as a whole
        )  # fmt: skip
    with closing(connect(settings.db_path)) as db:
        export_store.set_child_pid(db, job.id, child.pid)
    while True:
        try:
            returncode = child.wait(timeout=1.0)
            break
        except subprocess.TimeoutExpired:
            pass
        if stopping.is_set():
            returncode = stop_process_group(child, STOP_GRACE_SECONDS)
            break
    with closing(connect(settings.db_path)) as db:
        if stopping.is_set():
            reason = "stopped before it finished (its worker or command stopped); queue it again"
        else:
            reason = f"the export process ended with {exit_reason(returncode)}"
        if export_store.fail_export_job(db, job.id, reason):  # the child recorded nothing
            log.info("export job #%d: %s", job.id, reason)


def recover_stale_export_jobs(db, stale_seconds: float | None = None) -> list[int]:
    """Running export jobs whose heartbeat stopped: failed with the reason. Their ids."""
    stale_seconds = STALE_SECONDS if stale_seconds is None else stale_seconds
    cutoff = (datetime.now(UTC) - timedelta(seconds=stale_seconds)).isoformat(
        timespec="milliseconds"
    )
    recovered = []
    for job in export_store.stale_running_export_jobs(db, cutoff):
        _kill_orphan_process(job.child_pid, b"ftapp.deploy.child", job.id)
        reason = f"no heartbeat since {job.heartbeat_at} (its process was lost); queue it again"
        if export_store.fail_export_job(db, job.id, reason):
            recovered.append(job.id)
    return recovered


def child_command(job_id: int, gpus: int = 1) -> list[str]:
    """The training process's command line: the same entry point on one device or several
    (data parallel through accelerate, one process per GPU)."""
    entry = ["-m", "ftapp.training.child", str(job_id)]
    if gpus <= 1:
        return [sys.executable, *entry]
    launch = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(gpus)]
    return [sys.executable, *launch, *entry]


def _kill_orphan(job: Job) -> None:
    """A stale job's training process may still hang on this machine: end it before resuming."""
    _kill_orphan_process(job.child_pid, b"ftapp.training.child", job.id)


def _kill_orphan_process(pid: int | None, module: bytes, job_id: int) -> None:
    """Kill the process group of `pid` if it is still `python -m <module> <job_id>` (a pid can
    be reused by an unrelated process once its process is gone)."""
    if not pid:
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if module in cmdline and str(job_id).encode() in cmdline:
        with suppress(ProcessLookupError):  # it may have ended since its cmdline was read
            signal_group(os.getpgid(pid), signal.SIGKILL)


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
        watch_parent(os.getppid(), worker.stopping.set, 2.0, until=worker.stopping)

    def stop(signum, frame):
        worker.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run_forever()
