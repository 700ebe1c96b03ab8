"""The worker: `ftapp worker`. Claims queued jobs one at a time and runs each through its
runner (ftapp.training.runs): a child process of its own here (its own process group, output
to the job's log), so a crash or an out-of-memory kill of a job never takes the worker down,
or a Ray job on a cluster. Either way the worker is the one that writes the job's rows: it
follows the run's events (ftapp.training.events) and records them (ftapp.training.recorder),
beats the job's heartbeat while the run lives, and passes on a cancel.

It also watches over jobs whose worker died: a running job whose worker process is gone (or
whose heartbeat is older than STALE_SECONDS) is taken over by the next worker, which follows
the same run if it is still training (the child lives in a process group of its own; a Ray
job lives on its cluster) from the events it had not recorded yet. A run that died too (the
machine restarted) is marked interrupted and later resumed from its last checkpoint, at most
MAX_ATTEMPTS times.

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
from functools import partial
from pathlib import Path

from ftapp.processes import (
    exit_reason,
    pid_alive,
    signal_group,
    stop_process_group,
    watch_parent,
)
from ftapp.records import Job, JobStatus
from ftapp.settings import Settings
from ftapp.store import export_jobs as export_store
from ftapp.store import jobs as store
from ftapp.store.db import connect
from ftapp.store.export_jobs import ExportJob
from ftapp.timeutil import utc_now
from ftapp.training.events import parse_events
from ftapp.training.recorder import record_events
from ftapp.training.runs import Ending, Run, kill_training_child, open_run, output_path, read_log

log = logging.getLogger(__name__)

STALE_SECONDS = 45
MAX_ATTEMPTS = 3
CANCEL_GRACE_SECONDS = 10
STOP_GRACE_SECONDS = 10
HEARTBEAT_SECONDS = 5.0
FOLLOW_SECONDS = 1.0  # how often a run's output is read
EXIT_GRACE_SECONDS = 30.0  # a run that told its end has this long to exit


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
        """Follow a job whose worker died, or else recover stale jobs and run the next job if
        there is one. True if a job ran."""
        with closing(connect(self.settings.db_path)) as db:
            orphan = take_over_orphan(db, self.worker_id)
        if orphan is not None:
            log.info("job #%d: taking over from worker %s", orphan.id, orphan.worker_id)
            self.follow(orphan, open_run(self.settings, orphan, self.gpus))
            with closing(connect(self.settings.db_path)) as db:
                if store.get_job(db, orphan.id).status != JobStatus.INTERRUPTED:
                    return True
            # Its run had died too: the job resumes now, claimed like any waiting job.
        with closing(connect(self.settings.db_path)) as db:
            recover_stale_jobs(db)
            if self.device.startswith("cuda") and not self._next_job_fits(db):
                return orphan is not None
            job = store.claim_next_job(db, self.worker_id, self.device)
        if job is None:
            return orphan is not None
        self.run_job(job)
        return True

    def _next_job_fits(self, db) -> bool:
        """On a GPU shared with vLLM: whether the next job fits in the free memory now. If
        not, the job stays queued and says why (the Train tab shows it)."""
        from ftapp.models.registry import get_base_model
        from ftapp.training.config import config_from_dict
        from ftapp.training.gpu_memory import gpu_wait_reason

        job = store.next_queued_job(db)
        if job is None or job.runner != "local":
            return True
        index = int(self.device.partition(":")[2] or 0)
        model = get_base_model(db, self.settings.models_dir, job.base_model)
        config = config_from_dict(job.config)
        reason = gpu_wait_reason(config, model.path, self.settings.vllm_gpu_memory, index)
        if reason != job.waiting_reason:
            store.update_job(db, job.id, waiting_reason=reason)
        return reason is None

    def run_job(self, job: Job) -> None:
        """Start the claimed job's run (here or on a Ray cluster) and follow it to its end."""
        log.info("job #%d %s: starting on %s (attempt %d)", job.id, job.name, job.runner,
                 job.attempts)  # fmt: skip
        run = open_run(self.settings, job, self.gpus)
        try:
            run.start()
        except Exception as exc:  # the cluster is unreachable, the folder can't be written
            log.exception("job #%d: could not start", job.id)
            with closing(connect(self.settings.db_path)) as db:
                _interrupt(db, store.get_job(db, job.id), f"could not start: {exc}")
            return
        self.follow(job, run)

    def follow(self, job: Job, run: Run) -> None:
        """Turn the run's events into rows until it ends; beat the job's heartbeat while the
        run is alive, pass on a cancel, and stop (or leave, for a Ray job) when the worker
        stops."""
        with closing(connect(self.settings.db_path)) as db:
            offset = store.get_job(db, job.id).event_offset
        cancel_asked_at = None
        last_beat = 0.0
        while True:
            ending = run.ended()  # before reading: all it wrote before it ended is read
            offset, told = self._record_output(job, run, offset)
            if told:
                self._wait_for_exit(run)
                return
            if ending is not None:
                self._settle(job, ending)
                return
            if self.stopping.is_set():
                if run.stop_for_worker_exit():
                    self._record_output(job, run, offset)
                    self._settle(job, Ending("the worker stopped", True))
                else:
                    log.info("job #%d: the worker stops; the job trains on", job.id)
                return
            with closing(connect(self.settings.db_path)) as db:
                current = store.get_job(db, job.id)
                if time.monotonic() - last_beat >= HEARTBEAT_SECONDS and run.reachable:
                    store.update_job(db, job.id, heartbeat_at=utc_now())
                    last_beat = time.monotonic()
            if current.status != JobStatus.RUNNING:  # ended by someone else: nothing to do
                return
            if current.is_cancel_requested and cancel_asked_at is None:
                cancel_asked_at = time.monotonic()
                run.cancel()
            # A local run stops by itself at the next step; one stuck for too long is killed.
            if cancel_asked_at and time.monotonic() - cancel_asked_at > CANCEL_GRACE_SECONDS:
                run.kill()
            self.stopping.wait(FOLLOW_SECONDS)

    def _record_output(self, job: Job, run: Run, offset: int) -> tuple[int, bool]:
        """Record the events the run wrote since `offset`; the new offset, and whether they
        ended the job."""
        text, new_offset = run.read_output(offset)
        if new_offset == offset:
            return offset, False
        with closing(connect(self.settings.db_path)) as db:
            current = store.get_job(db, job.id)
            told = record_events(db, current, parse_events(text), new_offset, run.local_path)
        return new_offset, told

    @staticmethod
    def _wait_for_exit(run: Run) -> None:
        """The run told its end; its process exits next (or is made to)."""
        deadline = time.monotonic() + EXIT_GRACE_SECONDS
        while run.ended() is None:
            if time.monotonic() > deadline:
                run.kill()
                return
            time.sleep(0.2)

    def _settle(self, job: Job, ending: Ending) -> None:
        """Record how the job ended when its run could not tell (killed, crashed hard,
        stopped with the worker, failed on the cluster)."""
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
            elif ending.resumable:
                _interrupt(db, current, ending.reason)
            else:
                store.finish_job(db, job.id, JobStatus.FAILED, ending.reason)
        log.info("job #%d: %s", job.id, ending.reason)


def take_over_orphan(db, worker_id: str, stale_seconds: float | None = None) -> Job | None:
    """A running job whose worker is gone (a process of this machine that no longer exists,
    or a heartbeat older than STALE_SECONDS), now this worker's; None if there is none. Its
    run (a child process, a Ray job) may still be training: the worker follows it."""
    cutoff = _cutoff(STALE_SECONDS if stale_seconds is None else stale_seconds)
    for job in store.running_jobs(db):
        if job.worker_id == worker_id:
            continue
        if not worker_is_gone(job.worker_id) and (job.heartbeat_at or "") >= cutoff:
            continue
        if store.take_over_job(db, job.id, job.worker_id, worker_id):
            return store.get_job(db, job.id)
    return None


def worker_is_gone(worker_id: str | None) -> bool:
    """Whether the worker `host:pid` was on this machine and its process has ended."""
    host, _, pid = (worker_id or "").rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def _cutoff(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def recover_stale_jobs(db, stale_seconds: float | None = None) -> list[int]:
    """Running jobs on this machine whose heartbeat stopped and that no worker took over: the
    events their run left unread recorded, then interrupted (resumed later), or failed after
    MAX_ATTEMPTS. Returns their ids. A Ray job is left to take_over_orphan: it may be
    training on."""
    cutoff = _cutoff(STALE_SECONDS if stale_seconds is None else stale_seconds)
    recovered = []
    for job in store.stale_running_jobs(db, cutoff):
        if job.runner != "local":
            continue
        kill_training_child(job)  # a training process may still hang on this machine
        # What it said before it died and nobody read (a checkpoint saved, even its end).
        text, end = read_log(job, job.event_offset)
        if not record_events(db, job, parse_events(text), end, partial(output_path, job)):
            _interrupt(db, store.get_job(db, job.id),
                       f"no heartbeat since {job.heartbeat_at} (its worker was lost)")  # fmt: skip
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
