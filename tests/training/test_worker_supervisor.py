"""The worker beside the web app is supervised: a real `ftapp worker` killed with SIGKILL is
started again (with a log line) and the new one runs the queue; a worker that keeps dying is
started again after growing pauses; after stop() the worker is gone and none is started; the
real app stopped with Ctrl-C stops its worker and starts no other on the way out."""

import logging
import os
import re
import signal
import sys
import time

import psutil
import pytest

from ftapp.records import JobStatus
from ftapp.training.jobs import queue_job
from ftapp.training.supervisor import WorkerSupervisor
from tests.live_app import running_app
from tests.training.conftest import job_now, tiny_config, wait_for


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_killed_worker_is_started_again_and_stopped_with_the_app(
    db, settings, tiny, version, caplog
):
    caplog.set_level(logging.INFO, logger="ftapp.training.supervisor")
    supervisor = WorkerSupervisor(settings, pauses=(0.2,))
    supervisor.start()
    try:
        first = supervisor.pid
        assert "worker" in psutil.Process(first).cmdline()
        time.sleep(1)  # past its imports: a kill of a working worker, not of a starting one
        psutil.Process(first).send_signal(signal.SIGKILL)
        second = wait_for(lambda: supervisor.pid != first and supervisor.pid, "a new worker")
        assert alive(second) and not alive(first) and supervisor.starts == 2
        assert psutil.Process(second).cmdline()[-4:] == ["worker", "--exit-with-parent",
                                                         "--device", "cpu"]  # fmt: skip
        assert f"training worker (pid {first}) ended with signal SIGKILL" in caplog.text
        # The new worker serves the queue.
        job = queue_job(db, settings, tiny_config(version, max_steps=2, eval_steps=0), "alice")
        done = wait_for(lambda: job_now(settings, job.id).status.is_finished and
                        job_now(settings, job.id), "the job to end")  # fmt: skip
        assert done.status == JobStatus.SUCCEEDED, done.error
        assert done.worker_id.endswith(f":{second}")
    finally:
        supervisor.stop()
    assert not alive(second)
    time.sleep(1)  # longer than the pause: a restart would have happened by now
    assert supervisor.pid == second and supervisor.starts == 2


def test_a_worker_that_keeps_dying_is_started_again_after_growing_pauses(settings, caplog):
    caplog.set_level(logging.WARNING, logger="ftapp.training.supervisor")
    dying = [sys.executable, "-c", "raise SystemExit(3)"]
    supervisor = WorkerSupervisor(settings, command=dying, pauses=(0.05, 0.1, 0.3))
    supervisor.start()
    try:
        wait_for(lambda: supervisor.starts >= 4, "three restarts", timeout=60)
    finally:
        supervisor.stop()
    pauses = re.findall(r"ended with exit status 3; starting another in ([\d.]+) s", caplog.text)
    # Each death came within STEADY_SECONDS of its start: the pause grows, then stays longest.
    assert pauses[:3] == ["0.1", "0.3", "0.3"]
    starts = supervisor.starts
    time.sleep(0.6)
    assert supervisor.starts == starts  # stopped: nothing started any more


@pytest.mark.slow
def test_the_app_stopped_with_ctrl_c_stops_its_worker_and_starts_no_other(tmp_path, models_dir):
    home = tmp_path / "home"
    with running_app(home, models_dir) as app:
        started = wait_for(lambda: re.search(r"training worker started \(pid (\d+)\)",
                                             app.log_tail()), "the worker", 60)  # fmt: skip
        worker = psutil.Process(int(started.group(1)))
        # Ctrl-C in a terminal: SIGINT to the whole foreground process group. The app is held
        # still meanwhile, so that what the worker does is not a race with the app's stop():
        # the SIGINT must reach the app alone (a worker that got it ended at once, and the app,
        # seeing it gone, started another on its way out).
        app.process.send_signal(signal.SIGSTOP)
        os.killpg(app.process.pid, signal.SIGINT)
        time.sleep(3)
        assert alive(worker.pid)
        app.process.send_signal(signal.SIGCONT)
        # A guard against hanging, not a speed check: the worker gets 20 s to stop its job,
        # the answer thread 10 s, Gradio 5 s, and a busy machine is slower still.
        assert app.process.wait(180) is not None
    log = app.log_tail(100_000)
    assert "starting another" not in log and "started again" not in log
    assert not alive(worker.pid)
    workers = (home / "logs" / "worker.log").read_text().count("ftapp.training.worker: worker ")
    assert workers == 1
    assert not [p for p in psutil.process_iter() if p.pid != os.getpid()
                and safe_environ(p).get("FTAPP_HOME") == str(home) and alive(p.pid)]  # fmt: skip


def safe_environ(process: psutil.Process) -> dict:
    try:
        return process.environ()
    except psutil.Error:
        return {}
