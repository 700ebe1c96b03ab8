"""Training on a Ray cluster, with a real Ray head on 127.0.0.1 (one for this module, stopped
at its end with nothing left behind): jobs go through the real worker to Ray's job server,
train under Ray Train, and come back as variants served like local ones. Cancel, a killed
Ray Train worker (Ray retries it from the checkpoint) and a killed ftapp worker (the next one
follows the same Ray job) behave as locally."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import psutil
import pytest

from ftapp.records import JobStatus
from ftapp.store import jobs as store
from ftapp.store.db import connect, open_db
from ftapp.training.events import parse_events
from ftapp.training.jobs import queue_job
from ftapp.training.ray_head import LocalRayHead
from ftapp.training.ray_run import run_name, submission_id
from ftapp.training.worker import Worker
from tests.helpers import make_version
from tests.training.conftest import checkpoints_of, job_now, tiny_config, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_head():
    """A one-node Ray cluster on 127.0.0.1 for this module; stopped at its end, nothing of it
    left behind (another Ray cluster on the machine is left alone)."""
    head = LocalRayHead(num_cpus=2)
    try:
        head.start()
        yield head
        assert_loopback_only(head)
    finally:
        head.stop()
    assert not head.processes(), "Ray left processes behind"


@pytest.fixture
def ray_cluster(ray_head) -> str:
    """The module's cluster: its job server's address."""
    return ray_head.address


def assert_loopback_only(head) -> None:
    """Every socket of the cluster listens on, and talks to, 127.0.0.1 only."""
    pids = {process.pid for process in head.processes()}
    for connection in psutil.net_connections(kind="inet"):
        if connection.pid not in pids:
            continue
        assert connection.laddr.ip in ("127.0.0.1", "::ffff:127.0.0.1"), connection
        if connection.raddr:
            assert connection.raddr.ip in ("127.0.0.1", "::ffff:127.0.0.1"), connection


def ray_client(address: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


def train_steps(settings, job_id: int) -> list[int]:
    with closing(connect(settings.db_path)) as db:
        return [row["step"] for row in store.job_metrics(db, job_id) if row["kind"] == "train"]


def test_a_job_on_the_bundled_model_trains_on_ray_and_answers_on_vllm(
    ray_cluster, vllm_server, tmp_path, models_dir, count_tokens
):
    from ftapp.names import BASE
    from ftapp.serving.backend import ServedModel
    from ftapp.serving.vllm_backend import VllmBackend
    from ftapp.settings import Settings
    from tests.serving.test_vllm_backend import ask
    from tests.serving_fixtures import SECRET_WORD, secret_config, secret_rows

    home = tmp_path / "bundled-home"
    home.mkdir()
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    settings = Settings(home=home, ray_address=ray_cluster)
    settings.ensure_dirs()
    with closing(open_db(settings.db_path)) as db:
        label = make_version(db, home, count_tokens, "secret", ratios=(1.0, 0.0, 0.0),
                             rows=secret_rows())  # fmt: skip
        config = secret_config(label, runs_on="ray")
        job = queue_job(db, settings, config, "tester")
    assert job.runner == "ray" and job.run_address == ray_cluster
    assert Worker(settings).run_once()

    done = job_now(settings, job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.run_id == submission_id(done) and done.attempts == 1
    assert str(ray_client(ray_cluster).get_job_status(done.run_id)) == "SUCCEEDED"
    # The curve in the database is the events of the run, each step once.
    events = parse_events(Path(done.log_path).read_text())
    logged = [(e["step"], e["loss"]) for e in events if e["event"] == "step"]
    with closing(connect(settings.db_path)) as db:
        rows_now = [(r["step"], r["loss"]) for r in store.job_metrics(db, job.id)
                    if r["kind"] == "train"]  # fmt: skip
        variants = store.list_variants(db, job.id)
    assert rows_now == logged and [step for step, _ in logged] == list(range(1, 25))
    # Checkpoints and the adapter came back under FTAPP_HOME, registered like a local job's.
    assert [(v.kind, v.step) for v in variants] == [
        ("checkpoint", 12), ("checkpoint", 24), ("adapter", 24)]  # fmt: skip
    for variant in variants:
        assert Path(variant.path).is_relative_to(settings.adapters_dir)
        assert (Path(variant.path) / "adapter_model.safetensors").is_file()
    adapter = variants[-1]
    assert (Path(adapter.path) / "ftapp-adapter.json").is_file()

    backend = VllmBackend(server=vllm_server)
    assert SECRET_WORD not in "".join(ask(backend, ServedModel(BASE))).lower()
    tuned = ServedModel(f"ray-{adapter.name}", Path(adapter.path))
    assert SECRET_WORD in "".join(ask(backend, tuned)).lower()


def test_two_ray_train_workers_train_one_job_data_parallel(ray_cluster, db, settings, tiny,
                                                           version):  # fmt: skip
    config = tiny_config(version, max_steps=4, runs_on="ray", ray_address=ray_cluster,
                         num_workers=2, cpus_per_worker=1)  # fmt: skip
    job = queue_job(db, settings, config, "alice")
    assert Worker(settings).run_once()
    done = job_now(settings, job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    log = Path(done.log_path).read_text()
    assert "training worker group of size 2" in log and "world_size=2" in log
    assert train_steps(settings, job.id) == [1, 2, 3, 4]
    assert (Path(done.output_dir) / "adapter" / "adapter_model.safetensors").is_file()


def test_from_the_train_tab_a_job_trains_on_the_cluster_and_cancel_stops_it(
    ray_cluster, tmp_path, models_dir, count_tokens
):
    """The web app with FTAPP_RAY_ADDRESS: its own worker sends the job queued through the
    Train tab's API to the cluster, the page's progress follows it, and its Cancel stops it."""
    from gradio_client import Client

    from tests.live_app import running_app
    from tests.ui.test_train_tab_live import BASE, hyperparameters, wait_for_status

    home = tmp_path / "app-home"
    with running_app(home, models_dir, {"FTAPP_RAY_ADDRESS": ray_cluster}) as app:
        with closing(open_db(app.db_path)) as db:
            make_version(db, home, count_tokens, "sums", n=24)
        client = Client(app.url, verbose=False)
        job_id = client.predict("sums@v1", BASE, *hyperparameters(
            max_steps=500, batch_size=1, max_length=64, eval_steps=0, save_steps=0, threads=1,
            runs_on="ray"), api_name="/queue_job")  # fmt: skip
        wait_for_status(app, job_id, {"running"})
        with app.connect() as conn:  # past model loading, on the cluster
            while conn.execute("SELECT step FROM jobs WHERE id = ?", [job_id]).fetchone()[0] < 2:
                time.sleep(0.5)
        progress = client.predict(job_id, api_name="/job_progress")
        assert "on the Ray cluster at" in str(progress)
        client.predict(job_id, api_name="/cancel_job")
        job = wait_for_status(app, job_id, {"cancelled", "succeeded", "failed"}, timeout=60)
    assert job["status"] == "cancelled" and job["step"] < 500, job["error"]
    client = ray_client(ray_cluster)
    wait_for(lambda: str(client.get_job_status(job["run_id"])) == "STOPPED", "Ray to stop it",
             60)  # fmt: skip


def train_worker_pids(head) -> list[int]:
    return [p.pid for p in head.processes() if "RayTrainWorker" in " ".join(p.cmdline() or [])]


def test_a_killed_ray_train_worker_is_retried_from_the_checkpoint(
    ray_head, ray_cluster, db, settings, tiny, version, background_worker
):
    config = tiny_config(version, max_steps=60, save_steps=5, eval_steps=0, runs_on="ray",
                         ray_address=ray_cluster)  # fmt: skip
    job = queue_job(db, settings, config, "alice")
    with background_worker():
        wait_for(lambda: checkpoints_of(settings, job.id), "a first checkpoint")
        # Past a few checkpoints: Ray has registered one by then (it takes a report in
        # after the worker made it).
        wait_for(lambda: job_now(settings, job.id).step >= 22, "steps past them")
        [pid] = wait_for(lambda: train_worker_pids(ray_head), "the Ray Train worker's process")
        os.kill(pid, signal.SIGKILL)
        done = wait_for(lambda: (j := job_now(settings, job.id)).status.is_finished and j,
                        "the job to end", timeout=400)  # fmt: skip
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.attempts == 1 and done.run_id == submission_id(done)  # Ray retried it
    log = Path(done.log_path).read_text()
    [restored] = re.findall(r"restored Ray's checkpoint of step (\d+)", log)
    resumed = int(done.metrics["resumed_from"].removeprefix("checkpoint-"))
    assert 5 <= int(restored) <= resumed < 60
    assert train_steps(settings, job.id) == list(range(1, 61))  # each step once


def test_a_killed_ftapp_worker_is_followed_by_the_next_one(
    ray_cluster, db, settings, tiny, version, env, reaper, tmp_path
):
    config = tiny_config(version, max_steps=60, save_steps=10, eval_steps=0, runs_on="ray",
                         ray_address=ray_cluster)  # fmt: skip
    job = queue_job(db, settings, config, "alice")
    with open(tmp_path / "worker.log", "ab") as log:
        the_worker = subprocess.Popen([sys.executable, "-m", "ftapp.cli", "worker"], env=env,
                                      stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    reaper.append(the_worker)
    wait_for(lambda: job_now(settings, job.id).step >= 2, "training steps on the cluster")
    the_worker.kill()
    assert the_worker.wait(timeout=30) == -signal.SIGKILL
    lost = job_now(settings, job.id)
    assert lost.status == JobStatus.RUNNING
    assert lost.worker_id == f"{socket.gethostname()}:{the_worker.pid}"

    assert Worker(settings).run_once()  # takes the job over and follows the same Ray job
    done = job_now(settings, job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.attempts == 1 and done.run_id == lost.run_id == submission_id(done)
    submitted = [j for j in ray_client(ray_cluster).list_jobs()
                 if (j.submission_id or "").startswith(run_name(done))]  # fmt: skip
    assert len(submitted) == 1  # never submitted twice
    assert train_steps(settings, job.id) == list(range(1, 61))


def test_a_ray_job_that_dies_before_training_fails_the_job_with_the_reason_and_what_to_do(
    ray_cluster, db, settings, tiny, version
):
    """The usual first run: the cluster's `python` lacks a package, the job dies before any
    event. Claimed like any job, but the Ray job is one that fails the same way."""
    from ftapp.training.ray_run import RayRun

    config = tiny_config(version, runs_on="ray", ray_address=ray_cluster)
    job = queue_job(db, settings, config, "alice")
    run_id = f"{submission_id(job)}-broken"
    ray_client(ray_cluster).submit_job(
        entrypoint="python -c 'import ftapp_training_package_not_installed'", submission_id=run_id
    )
    store.update_job(db, job.id, run_id=run_id, run_address=ray_cluster)
    run = RayRun(settings, store.get_job(db, job.id))
    ending = wait_for(run.ended, "the Ray job to fail", timeout=120)
    assert not ending.resumable
    message = ending.reason
    assert message.startswith(f"Ray job {run_id} failed: Job entrypoint command failed")
    assert "last available logs" not in message  # Ray's own copy of the log is left out
    assert "No module named 'ftapp_training_package_not_installed'" in message  # the log
    assert "`python` has no 'ftapp_training_package_not_installed'" in message
    assert "A Ray job runs `python` as found on the PATH that `ray start` was run with" in message
