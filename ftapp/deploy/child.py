"""The process of one export job: `python -m ftapp.deploy.child JOB_ID`.

Started by the worker (or by `ftapp export` in the terminal) in its own process group, its
output going to the job's log, once the job is claimed (status running). It runs the same core
functions the CLI ran before exports were jobs (deploy/merge.py, deploy/hub.py), beats the
job's heartbeat while it works, and records how the job ended: the merged folder, or the
pushed repo's URL and commit; or the reason it failed. A kill leaves the job running with a
heartbeat that goes stale, and the next worker marks it failed (ftapp/training/worker.py).
"""

from __future__ import annotations

import logging
import sys
import threading
from contextlib import closing
from pathlib import Path

from ftapp.deploy.export_jobs import describe, take_token
from ftapp.errors import FtappError
from ftapp.processes import job_child_main
from ftapp.settings import load_settings
from ftapp.store import export_jobs as store
from ftapp.store.db import connect
from ftapp.store.export_jobs import ExportAction, ExportStatus
from ftapp.training.child import describe_failure
from ftapp.training.worker import HEARTBEAT_SECONDS

log = logging.getLogger("ftapp.deploy")

EXIT_FAILED = 2


def run_export_job(job_id: int) -> str:
    """Run export job `job_id` (claimed already) and record its result; returns its line."""
    settings = load_settings()
    token = take_token(settings.home, job_id)  # read once, then gone from the disk
    with closing(connect(settings.db_path)) as db:
        job = store.get_export_job(db, job_id)
        if job.status != ExportStatus.RUNNING:
            raise FtappError(f"export job #{job_id} is {job.status.value}, not running")
        stop = threading.Event()
        beating = threading.Thread(target=_beat, args=(settings.db_path, job_id, stop),
                                   daemon=True, name="heartbeat")  # fmt: skip
        beating.start()
        try:
            if job.action == ExportAction.MERGE:
                from ftapp.deploy.merge import merge_adapter

                log.info("export job #%d: merging %s", job.id, job.model)
                out = Path(job.out_dir) if job.out_dir else None
                path = merge_adapter(db, settings, job.model, job.created_by, out)
                store.succeed_export_job(db, job_id, result_path=str(path))
            else:
                from ftapp.deploy.hub import push_to_hub

                log.info("export job #%d: pushing %s%s to %s", job.id, job.model,
                         " (merged)" if job.is_merged else "", job.repo_id)  # fmt: skip
                pushed = push_to_hub(db, settings, job.model, job.repo_id or "", job.created_by,
                                     merged=job.is_merged, private=job.is_private,
                                     token=token)  # fmt: skip
                store.succeed_export_job(db, job_id, result_url=pushed.url,
                                         result_commit=pushed.commit)  # fmt: skip
        finally:
            stop.set()
            beating.join(timeout=5)
        return describe(store.get_export_job(db, job_id))


def _beat(db_path: Path, job_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        with closing(connect(db_path)) as db:
            store.beat(db, job_id)


def main(argv: list[str] | None = None) -> int:
    return job_child_main(argv, _run_and_print, _record_failure, exit_failed=EXIT_FAILED,
                          quiet_errors=(FtappError,))  # fmt: skip


def _run_and_print(job_id: int) -> None:
    print(run_export_job(job_id), flush=True)


def _record_failure(job_id: int, exc: BaseException) -> None:
    reason = describe_failure(exc)
    print(f"error: {reason}", file=sys.stderr, flush=True)
    with closing(connect(load_settings().db_path)) as db:
        store.fail_export_job(db, job_id, reason)


if __name__ == "__main__":
    sys.exit(main())
