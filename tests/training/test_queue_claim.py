"""The queue in SQLite: claiming is atomic across connections, threads and processes; FIFO;
one running job per device; cancelling; stale jobs recovered, given up after MAX_ATTEMPTS."""

import subprocess
import sys
import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest

from ftapp.errors import Conflict
from ftapp.records import JobStatus
from ftapp.store import jobs as store
from ftapp.store.db import connect
from ftapp.training import worker
from ftapp.training.jobs import cancel_job, queue_job
from ftapp.training.runs import run_folder
from tests.training.conftest import tiny_config


def queue(db, settings, version, n):
    return [queue_job(db, settings, tiny_config(version), "alice").id for _ in range(n)]


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def test_claims_are_fifo_with_one_running_job_per_device(db, settings, tiny, version):
    first, second, third = queue(db, settings, version, 3)
    claimed = store.claim_next_job(db, "w1", "cpu")
    assert claimed.id == first and claimed.status == JobStatus.RUNNING and claimed.attempts == 1
    assert claimed.worker_id == "w1" and claimed.device == "cpu" and claimed.heartbeat_at
    assert store.claim_next_job(db, "w2", "cpu") is None  # cpu is busy
    assert store.claim_next_job(db, "w2", "cuda:0").id == second
    assert store.claim_next_job(db, "w3", "cuda:0") is None
    assert store.finish_job(db, first, JobStatus.SUCCEEDED)
    assert not store.finish_job(db, first, JobStatus.FAILED, "too late")  # already finished
    assert store.get_job(db, first).status == JobStatus.SUCCEEDED
    assert store.claim_next_job(db, "w1", "cpu").id == third
    assert store.claim_next_job(db, "w4", "cuda:1") is None  # nothing left
    assert [j.status for j in store.list_jobs(db)] == ["running", "running", "succeeded"]


def test_interrupted_jobs_are_claimed_again_in_order(db, settings, tiny, version):
    first, second = queue(db, settings, version, 2)
    store.claim_next_job(db, "w1", "cpu")
    db["jobs"].update(first, {"status": "interrupted", "child_pid": 4242})
    job = store.claim_next_job(db, "w2", "cpu")
    assert (job.id, job.attempts, job.worker_id, job.child_pid) == (first, 2, "w2", None)


def test_racing_threads_never_claim_the_same_job(db, settings, tiny, version):
    [only] = queue(db, settings, version, 1)
    racers = 8
    barrier = threading.Barrier(racers)
    results, errors = [], []

    def claim(n):
        try:
            with closing(connect(settings.db_path)) as own:  # one connection per thread
                barrier.wait()
                results.append(store.claim_next_job(own, f"w{n}", f"device-{n}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    winners = [job for job in results if job is not None]
    assert len(results) == racers and len(winners) == 1 and winners[0].id == only
    assert store.get_job(db, only).attempts == 1


RACER = """
import sys
from ftapp.store import jobs
from ftapp.store.db import connect
db = connect(sys.argv[1])
n = 0
while True:
    n += 1
    job = jobs.claim_next_job(db, sys.argv[2], f"{sys.argv[2]}-device-{n}")
    if job is None:
        break
    print(job.id, flush=True)
"""


def test_racing_processes_split_the_queue_without_overlap(db, settings, tiny, version):
    ids = queue(db, settings, version, 30)
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, str(settings.db_path), name],
                         stdout=subprocess.PIPE, text=True)
        for name in ("p1", "p2", "p3")
    ]  # fmt: skip
    claimed = [[int(line) for line in racer.communicate(timeout=120)[0].split()]
               for racer in racers]  # fmt: skip
    assert all(racer.returncode == 0 for racer in racers)
    everything = [job_id for part in claimed for job_id in part]
    assert sorted(everything) == ids  # each job exactly once
    for part in claimed:
        assert part == sorted(part)  # each process took them oldest first
    assert {j.attempts for j in store.list_jobs(db)} == {1}


def test_cancel_a_waiting_job_at_once(db, settings, tiny, version):
    first, second = queue(db, settings, version, 2)
    job = cancel_job(db, first)
    assert job.status == JobStatus.CANCELLED and job.is_cancel_requested and job.finished_at
    assert job.error == "cancelled before it started"
    with pytest.raises(Conflict, match="already cancelled"):
        cancel_job(db, first)
    assert store.claim_next_job(db, "w1", "cpu").id == second  # the cancelled one is skipped
    running = cancel_job(db, second)
    assert running.status == JobStatus.RUNNING and running.is_cancel_requested
    assert store.claim_next_job(db, "w2", "other") is None


def test_cancel_an_interrupted_job_at_once(db, settings, tiny, version):
    [job_id] = queue(db, settings, version, 1)
    store.claim_next_job(db, "w1", "cpu")
    db["jobs"].update(job_id, {"status": "interrupted"})
    assert cancel_job(db, job_id).status == JobStatus.CANCELLED
    assert store.claim_next_job(db, "w1", "cpu") is None


def test_stale_jobs_are_interrupted_then_given_up(db, settings, tiny, version):
    stale, fresh = queue(db, settings, version, 2)
    for attempt in range(1, worker.MAX_ATTEMPTS + 1):
        assert store.claim_next_job(db, "w1", "cpu").id == stale
        db["jobs"].update(stale, {"heartbeat_at": ago(600), "child_pid": 999_999_999})
        assert [j.id for j in store.stale_running_jobs(db, ago(60))] == [stale]
        assert worker.recover_stale_jobs(db) == [stale]
        job = store.get_job(db, stale)
        assert job.attempts == attempt
        if attempt < worker.MAX_ATTEMPTS:
            assert job.status == JobStatus.INTERRUPTED and job.child_pid is None
            assert "no heartbeat since" in job.error and "resume" in job.error
    assert job.status == JobStatus.FAILED and job.finished_at
    assert f"gave up after {worker.MAX_ATTEMPTS} attempts" in job.error
    assert store.claim_next_job(db, "w1", "cpu").id == fresh  # the failed one is not retried


def test_a_fresh_heartbeat_is_left_alone(db, settings, tiny, version):
    [job_id] = queue(db, settings, version, 1)
    store.claim_next_job(db, "w1", "cpu")
    db["jobs"].update(job_id, {"heartbeat_at": ago(5)})
    assert store.stale_running_jobs(db, ago(60)) == []
    assert worker.recover_stale_jobs(db) == []
    assert worker.recover_stale_jobs(db, stale_seconds=1) == [job_id]  # older than 1 s
    assert store.get_job(db, job_id).status == JobStatus.INTERRUPTED


def test_a_stale_job_with_a_cancel_request_ends_cancelled(db, settings, tiny, version):
    [job_id] = queue(db, settings, version, 1)
    store.claim_next_job(db, "w1", "cpu")
    cancel_job(db, job_id)  # asked to stop, but its worker and child are gone
    db["jobs"].update(job_id, {"heartbeat_at": ago(600)})
    assert worker.recover_stale_jobs(db) == [job_id]
    job = store.get_job(db, job_id)
    assert job.status == JobStatus.CANCELLED and job.finished_at
    assert "cancelled at step 0" in job.error and "no heartbeat" in job.error
    assert store.claim_next_job(db, "w1", "cpu") is None


def test_recovery_kills_a_stale_jobs_orphaned_child_only(db, settings, tiny, version, reaper):
    first, second = queue(db, settings, version, 2)
    sleeper = "import time; time.sleep(120)"
    # argv like a training child's: `... ftapp.training.child RUN_FOLDER`
    folders = {job.id: str(run_folder(job)) for job in store.list_jobs(db)}
    orphan = subprocess.Popen([sys.executable, "-c", sleeper, "ftapp.training.child",
                               folders[first]], start_new_session=True)  # fmt: skip
    bystander = subprocess.Popen([sys.executable, "-c", sleeper, "something.else",
                                  folders[second]], start_new_session=True)  # fmt: skip
    reaper.extend([orphan, bystander])
    store.claim_next_job(db, "w1", "cpu")
    store.claim_next_job(db, "w1", "gpu")
    db["jobs"].update(first, {"heartbeat_at": ago(600), "child_pid": orphan.pid})
    db["jobs"].update(second, {"heartbeat_at": ago(600), "child_pid": bystander.pid})
    assert worker.recover_stale_jobs(db) == [first, second]
    assert orphan.wait(timeout=30) == -9
    assert bystander.poll() is None  # not a training child: never killed
