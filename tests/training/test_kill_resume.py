"""Stopping things mid-run, with real processes: the training child (kill -9, as the OOM killer
does), the worker and its child together (a machine restart, with a checkpoint cut short), the
worker alone (its child finishes the job), and the worker asked to stop (SIGTERM). A DPO job,
from the base model or going on from an adapter, resumes like an SFT one. Killed jobs end
succeeded, resumed from their last complete checkpoint, with each step logged once."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from ftapp.records import JobStatus
from ftapp.store import jobs as store
from ftapp.store.db import connect
from ftapp.training.events import parse_events
from ftapp.training.jobs import queue_job
from ftapp.training.runs import output_path, read_log
from ftapp.training.worker import Worker, recover_stale_jobs
from tests.helpers import make_version
from tests.training.conftest import (
    job_now,
    preference_rows,
    tiny_config,
    wait_for,
)


def finished(settings, job_id):
    job = job_now(settings, job_id)
    return job if job.status.is_finished else None


def past_a_checkpoint(settings, job_id):
    """(step, path) of the child's last checkpoint, once it has trained steps after it (which
    it will redo). Read from the child's own output, not from what the worker has recorded:
    the worker records in batches, and one batch may hold a checkpoint and every step after
    it up to the next one."""
    job = job_now(settings, job_id)
    if not job.log_path:
        return None
    events = parse_events(read_log(job, 0)[0])
    saved = [e for e in events if e["event"] == "checkpoint"]
    steps = [e["step"] for e in events if e["event"] == "step"]
    if saved and steps and max(steps) > saved[-1]["step"]:
        return saved[-1]["step"], output_path(job, saved[-1]["path"])
    return None


def assert_resumed_and_complete(settings, job_id, max_steps, save_steps, killed_after):
    with closing(connect(settings.db_path)) as db:
        job = store.get_job(db, job_id)
        metrics = store.job_metrics(db, job_id)
        variants = store.list_variants(db, job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == 2 and job.error is None and job.step == max_steps
    resumed = int(job.metrics["resumed_from"].removeprefix("checkpoint-"))
    assert resumed >= killed_after and resumed % save_steps == 0
    log = Path(job.log_path).read_text()
    assert f"resuming from {job.output_dir}/checkpoint-{resumed}" in log
    # The loss curve has each step once: the steps the lost attempt logged after its last
    # checkpoint were trained again, and only the second run of them counts.
    train_steps = [row["step"] for row in metrics if row["kind"] == "train"]
    assert train_steps == list(range(1, max_steps + 1))
    checkpoints = [v for v in variants if v.kind == "checkpoint"]
    assert [v.step for v in checkpoints] == list(range(save_steps, max_steps + 1, save_steps))
    assert all((Path(v.path) / "adapter_model.safetensors").exists() for v in checkpoints)
    assert [v.name for v in variants if v.kind == "adapter"] == [job.name]
    return job, variants


@pytest.mark.parametrize("method", ["sft", "dpo", "dpo from an adapter"])
def test_a_killed_training_child_is_resumed_from_its_checkpoint(
    db, settings, tiny, version, background_worker, tmp_path, count_tokens, method
):
    max_steps, save_steps = 12, 4
    config = tiny_config(version, max_steps=max_steps, save_steps=save_steps, eval_steps=4)
    if method != "sft":
        pairs = make_version(db, tmp_path, count_tokens, name="prefs", rows=preference_rows(12))
        config = replace(config, dataset_version=pairs, method="dpo")
    if method == "dpo from an adapter":
        start = queue_job(db, settings, tiny_config(version, max_steps=2, name="start"), "alice")
        assert Worker(settings).run_once()
        assert store.get_job(db, start.id).status == JobStatus.SUCCEEDED
        config = replace(config, start_adapter="start")
    job = queue_job(db, settings, config, "alice")
    with background_worker():
        first_step, _ = wait_for(lambda: past_a_checkpoint(settings, job.id),
                                 "steps past a checkpoint")  # fmt: skip
        child_pid = job_now(settings, job.id).child_pid
        os.killpg(child_pid, signal.SIGKILL)  # the child is its own process group
        wait_for(lambda: job_now(settings, job.id).attempts == 2, "the job claimed again")
        done = wait_for(lambda: finished(settings, job.id), "the resumed job to end")
    assert done.child_pid != child_pid
    _, variants = assert_resumed_and_complete(settings, job.id, max_steps, save_steps, first_step)
    best = [v for v in variants if v.is_best]
    assert len(best) == 1 and best[0].kind == "checkpoint"
    assert best[0].eval_loss == min(v.eval_loss for v in variants if v.kind == "checkpoint")


def start_worker(env, reaper, tmp_path):
    """`ftapp worker` as a real process, its output in tmp_path/worker.log."""
    with open(tmp_path / "worker.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "ftapp.cli", "worker"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    reaper.append(process)
    return process


def test_a_machine_restart_is_resumed_by_the_next_worker(
    db, settings, tiny, version, env, reaper, tmp_path
):
    max_steps, save_steps = 12, 4
    config = tiny_config(version, max_steps=max_steps, save_steps=save_steps, eval_steps=0)
    job = queue_job(db, settings, config, "alice")
    the_worker = start_worker(env, reaper, tmp_path)
    first_step, first_path = wait_for(lambda: past_a_checkpoint(settings, job.id),
                                      "steps past a checkpoint")  # fmt: skip
    child_pid = job_now(settings, job.id).child_pid
    the_worker.kill()  # both die at once, as in a power cut: nobody records anything
    os.killpg(child_pid, signal.SIGKILL)
    assert the_worker.wait(timeout=30) == -signal.SIGKILL
    lost = job_now(settings, job.id)
    assert lost.status == JobStatus.RUNNING and lost.worker_id.endswith(f":{the_worker.pid}")
    # Had the power gone in the middle of a save, the next checkpoint would be half-written:
    # its adapter files, but not yet its optimizer and trainer state. It must not be used.
    half = Path(lost.output_dir) / f"checkpoint-{first_step + save_steps}"
    if not half.exists():
        half.mkdir()
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy(first_path / name, half / name)

    time.sleep(1.5)  # the heartbeat is now older than the (test's short) stale threshold
    assert recover_stale_jobs(db, stale_seconds=1) == [job.id]
    interrupted = store.get_job(db, job.id)
    assert interrupted.status == JobStatus.INTERRUPTED and "no heartbeat" in interrupted.error

    assert Worker(settings).run_once()
    assert_resumed_and_complete(settings, job.id, max_steps, save_steps, first_step)


def test_the_next_worker_takes_over_the_child_of_a_killed_worker(
    db, settings, tiny, version, env, reaper, tmp_path
):
    job = queue_job(db, settings, tiny_config(version, max_steps=16, eval_steps=0), "alice")
    the_worker = start_worker(env, reaper, tmp_path)
    wait_for(lambda: job_now(settings, job.id).step >= 1, "the first training step")
    child_pid = job_now(settings, job.id).child_pid
    the_worker.kill()
    assert the_worker.wait(timeout=30) == -signal.SIGKILL
    # The child trains on in its own process group; the next worker sees its worker is gone
    # and follows the same child from the events nobody recorded yet: no second attempt.
    assert Worker(settings).run_once()
    done = job_now(settings, job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.attempts == 1 and done.child_pid == child_pid and done.step == 16
    assert done.worker_id != f"{socket.gethostname()}:{the_worker.pid}"
    with closing(connect(settings.db_path)) as db2:
        steps = [row["step"] for row in store.job_metrics(db2, job.id) if row["kind"] == "train"]
    assert steps == list(range(1, 17))  # each step once, none lost in the hand-over
    assert [v.kind for v in store.list_variants(db, job.id)][-1] == "adapter"


def test_a_worker_stopped_politely_does_not_use_up_an_attempt(
    db, settings, tiny, version, env, reaper, tmp_path
):
    job = queue_job(db, settings, tiny_config(version, max_steps=200, eval_steps=0), "alice")
    # Two attempts were already lost to crashes: one more failure and it would be given up.
    db["jobs"].update(job.id, {"status": "interrupted", "attempts": 2})
    the_worker = start_worker(env, reaper, tmp_path)
    wait_for(lambda: job_now(settings, job.id).step >= 1, "the first training step")
    assert job_now(settings, job.id).attempts == 3
    the_worker.send_signal(signal.SIGTERM)  # the app or the machine shutting down
    assert the_worker.wait(timeout=60) == 0
    stopped = job_now(settings, job.id)
    assert stopped.status == JobStatus.INTERRUPTED, stopped.error
    assert stopped.error.startswith("the worker stopped") and stopped.child_pid is None
    assert stopped.attempts == 2  # the stop was no failed attempt
    assert store.claim_next_job(db, "next-worker", "cpu").id == job.id


def test_a_kill_after_the_last_checkpoint_trains_no_step_more(db, settings, tiny, version):
    job = queue_job(db, settings, tiny_config(version, max_steps=4, save_steps=2), "alice")
    assert Worker(settings).run_once()
    final = Path(store.get_job(db, job.id).output_dir) / "adapter"
    # What a kill between the last step's checkpoint and the end of the job leaves: every
    # checkpoint, no final adapter, the job running with a heartbeat that went stale.
    shutil.rmtree(final)
    db.execute("DELETE FROM model_variants WHERE job_id = ? AND kind = 'adapter'", [job.id])
    db["jobs"].update(job.id, {"status": "running", "finished_at": None,
                               "heartbeat_at": "2000-01-01T00:00:00.000+00:00"})  # fmt: skip
    assert recover_stale_jobs(db) == [job.id]

    assert Worker(settings).run_once()
    done = store.get_job(db, job.id)
    assert done.status == JobStatus.SUCCEEDED and done.attempts == 2, done.error
    # No fifth step: transformers, resumed from checkpoint-4 of 4 steps, trains one more.
    assert done.step == done.total_steps == 4 and done.metrics["global_step"] == 4
    assert done.metrics["resumed_from"] == "checkpoint-4"
    steps = [row["step"] for row in store.job_metrics(db, job.id) if row["kind"] == "train"]
    assert steps == [1, 2, 3, 4]
    # The final adapter is the best checkpoint, as when nothing was killed.
    [best] = [v for v in store.list_variants(db, job.id) if v.is_best]
    assert done.metrics["eval_loss"] == best.eval_loss
    weights = "adapter_model.safetensors"
    assert (final / weights).read_bytes() == (Path(best.path) / weights).read_bytes()
    assert store.get_variant(db, job.name).path == str(final)
