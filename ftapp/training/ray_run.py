"""A job that trains on a Ray cluster, as the worker sees it: submitted through Ray's job
server (`JobSubmissionClient`) with the run's folder as its working directory and ftapp's
own code as a module, followed through its status and its logs (where the events are), stopped
with `stop_job`. The training itself is ftapp.training.ray_entry, on the cluster.

The submission id is derived from the job and its attempt, `<run name>-<attempt>`, and
recorded before the submission: a worker that takes the job over follows that Ray job, and
never submits the attempt twice. The Ray Train run keeps its name (`ftapp-job-<id>-<tag>`)
in the storage (FTAPP_RAY_STORAGE) for every attempt, so a new attempt resumes from the last
checkpoint Ray kept there. Checkpoints and the adapter the run publishes to
`<storage>/<run name>/ftapp/` are copied back under the job's output folder, where vLLM
loads them like a local job's.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from contextlib import closing
from pathlib import Path

import ftapp
from ftapp.records import Job
from ftapp.settings import Settings
from ftapp.store import jobs as store
from ftapp.store.db import connect
from ftapp.training.ray_entry import copy_tree, published_uri
from ftapp.training.runs import Ending, write_run_folder

log = logging.getLogger(__name__)

ENTRYPOINT = "python -m ftapp.training.ray_entry"
LOG_TAIL_CHARS = 2000


def run_name(job: Job) -> str:
    """The job's Ray Train run: `ftapp-job-<id>-<tag>`, the tag telling apart the job #1 of
    two ftapp homes (or of a home started afresh) on one cluster and storage."""
    tag = hashlib.sha256(f"{job.output_dir}|{job.created_at}".encode()).hexdigest()[:8]
    return f"ftapp-job-{job.id}-{tag}"


def submission_id(job: Job) -> str:
    """The Ray job of the job's attempt: `<run name>-<attempt>`."""
    return f"{run_name(job)}-{job.attempts}"


class RayRun:
    def __init__(self, settings: Settings, job: Job):
        from ray.job_submission import JobSubmissionClient

        self.settings = settings
        self.job = job
        self.address = job.run_address or settings.ray_address
        self.client = JobSubmissionClient(self.address)
        self.id = job.run_id or submission_id(job)
        self.storage = settings.ray_storage_uri
        self._unreachable_since: float | None = None

    def start(self) -> None:
        self.id = submission_id(self.job)
        folder = write_run_folder(self.settings, self.job)
        with closing(connect(self.settings.db_path)) as db:
            # Recorded first: a worker that dies right after the submission leaves the id
            # behind, and the next one follows that Ray job instead of submitting another.
            store.update_job(db, self.job.id, run_id=self.id, run_address=self.address,
                             event_offset=0, child_pid=None)  # fmt: skip
        config = self.job.config
        self.client.submit_job(
            entrypoint=ENTRYPOINT,
            submission_id=self.id,
            runtime_env={
                "working_dir": str(folder),
                # ftapp's own code travels with the job: the nodes need its dependencies only.
                "py_modules": [str(Path(ftapp.__file__).parent)],
                "env_vars": {
                    "FTAPP_RAY_STORAGE": self.storage,
                    "FTAPP_RUN_NAME": run_name(self.job),
                    # Ray holds a worker's lines back for seconds to fold repeats: events
                    # would come late.
                    "RAY_DEDUP_LOGS": "0",
                    # Ray Train turns print() into a log call, which also logs what a library
                    # prints into a captured stream (dill's disassembly: thousands of lines).
                    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
                    "TOKENIZERS_PARALLELISM": "false",
                },
            },
            metadata={"ftapp_job": str(self.job.id), "name": self.job.name},
            entrypoint_num_cpus=0,  # the driver only waits; the workers take the CPUs
        )
        log.info("job #%d: submitted to %s as %s (%d Ray Train workers)", self.job.id,
                 self.address, self.id, config.get("num_workers", 1))  # fmt: skip

    def ended(self) -> Ending | None:
        try:
            info = self.client.get_job_info(self.id)
        except RuntimeError as exc:
            if "404" in str(exc) or "does not exist" in str(exc):
                # Never submitted (its worker died first), or the cluster was restarted and
                # lost it: a new attempt resumes from the checkpoints in the storage.
                return Ending(f"the cluster at {self.address} has no Ray job {self.id}", True)
            return self._unreachable(exc)
        except Exception as exc:  # the job server is down or the network is: keep waiting
            return self._unreachable(exc)
        self._unreachable_since = None
        status = str(info.status)
        if status in ("PENDING", "RUNNING"):
            return None
        if status == "SUCCEEDED":
            return Ending(f"Ray job {self.id} ended without saying how training went", False)
        if status == "STOPPED":
            return Ending(f"Ray job {self.id} was stopped on the cluster", False)
        return Ending(self._failure(info.message or status), False)

    @property
    def reachable(self) -> bool:
        return self._unreachable_since is None

    def _unreachable(self, exc: Exception) -> None:
        if self._unreachable_since is None:
            self._unreachable_since = time.monotonic()
            log.warning("job #%d: the Ray job server at %s does not answer (%s); waiting",
                        self.job.id, self.address, exc)  # fmt: skip
        return None

    def _failure(self, message: str) -> str:
        """Ray's reason (without the copy of the log it appends), the end of the log, and
        what to do when the cluster's Python lacks a package (the usual first-run mistake)."""
        reason = message.split(", last available logs")[0]
        try:
            tail = self.client.get_job_logs(self.id)[-LOG_TAIL_CHARS:].strip()
        except Exception:
            tail = ""
        text = f"Ray job {self.id} failed: {reason}"
        if tail:
            text += f"\n--- the end of its log ---\n{tail}"
        missing = re.search(r"No module named '([\w.]+)'", tail)
        if missing:
            text += (
                f"\nThe cluster's `python` has no {missing[1]!r}. A Ray job runs `python` as "
                "found on the PATH that `ray start` was run with: install ftapp's training "
                "packages there, or start Ray from the environment that has them (README: "
                "Training on a Ray cluster)."
            )
        return text

    def read_output(self, offset: int) -> tuple[str, int]:
        try:
            text = self.client.get_job_logs(self.id)
        except Exception:  # not submitted yet, or the server is away: nothing new for now
            return "", offset
        end = text.rfind("\n")
        if end < offset:
            return "", offset
        chunk = text[offset : end + 1]
        # The job's log here is what the Train tab and `ftapp jobs show` read.
        with open(self.job.log_path, "a", encoding="utf-8") as log_file:
            log_file.write(chunk)
        return chunk, end + 1

    def cancel(self) -> None:
        try:
            self.client.stop_job(self.id)
        except RuntimeError as exc:  # already over: the status says how
            log.info("job #%d: stopping Ray job %s: %s", self.job.id, self.id, exc)

    def kill(self) -> None:
        self.cancel()

    def stop_for_worker_exit(self) -> bool:
        return False  # it trains on: the next worker follows it

    def local_path(self, relative: str) -> Path:
        """Copy what the run published at `relative` into the job's output folder."""
        target = Path(self.job.output_dir) / relative
        copy_tree(published_uri(self.storage, run_name(self.job), relative), str(target))
        return target
