"""The training worker beside the web app (`make run`, `ftapp serve`): one `ftapp worker`
process, started with the app and stopped with it, and started again whenever it exits on its
own (killed, crashed), after a pause that grows while it keeps dying young, as the vLLM server
is (ftapp.serving.vllm_server). Its output goes to FTAPP_HOME/logs/worker.log.

Nothing is lost when a worker dies: the training process of its running job lives on in a
process group of its own and finishes the job, or, if it died too, the job's heartbeat goes
stale and the next worker resumes it from its last checkpoint (ftapp.training.worker). The
worker stops by itself, its job resumable, when the app dies (--exit-with-parent).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

from ftapp.processes import exit_reason
from ftapp.settings import Settings

log = logging.getLogger(__name__)

RESTART_PAUSES = (1, 2, 5, 10, 30)  # seconds before each further start while it keeps dying
STEADY_SECONDS = 60.0  # a worker that ran this long before it died starts a fresh streak
STOP_GRACE_SECONDS = 20.0  # a stopping worker first stops its job (up to 10 s)
POLL_SECONDS = 0.5


def worker_command(device: str) -> list[str]:
    return [sys.executable, "-m", "ftapp.cli", "worker", "--exit-with-parent", "--device", device]


def default_device() -> str:
    """cuda:0 where an NVIDIA GPU is present, else cpu."""
    from ftapp.training.gpu_memory import has_nvidia_gpu

    return "cuda:0" if has_nvidia_gpu() else "cpu"


class WorkerSupervisor:
    """One supervised worker process: start() starts it, stop() ends it for good."""

    def __init__(
        self,
        settings: Settings,
        command: list[str] | None = None,
        pauses: tuple[float, ...] = RESTART_PAUSES,
    ) -> None:
        self.settings = settings
        self.command = command or worker_command(default_device())
        self.pauses = pauses
        self.starts = 0  # how many processes were started (restarts = starts - 1)
        self._process: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        if self._thread is None:
            self._launch()
            self._thread = threading.Thread(target=self._supervise, name="worker-supervisor",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    def stop(self) -> None:
        """Stop the worker (it stops its job, which resumes on the next start) and restart no
        other."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=STOP_GRACE_SECONDS + 10)
        if self._process:  # the thread normally did it; this covers a thread that hung
            stop_worker_process(self._process)

    def _launch(self) -> None:
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        # A session of its own: a Ctrl-C in the terminal, or a SIGTERM to the app's process
        # group, reaches only the app, which then stops the worker. Reaching the worker too,
        # it ended the worker before the app's stop(), and a new one was started on the way out.
        with open(self.settings.logs_dir / "worker.log", "ab") as log_file:
            self._process = subprocess.Popen(
                self.command, stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env={**os.environ, "FTAPP_HOME": str(self.settings.home)},
                start_new_session=True,
            )  # fmt: skip
        self.starts += 1

    def _supervise(self) -> None:
        failures = 0  # consecutive workers that died young
        while True:
            process = self._process
            assert process is not None
            started = time.monotonic()
            while process.poll() is None and not self._stop.wait(POLL_SECONDS):
                pass
            if self._stop.is_set():
                stop_worker_process(process)
                return
            failures = 0 if time.monotonic() - started >= STEADY_SECONDS else failures + 1
            pause = self.pauses[min(failures, len(self.pauses) - 1)]
            log.warning("training worker (pid %d) ended with %s; starting another in %g s",
                        process.pid, exit_reason(process.returncode), pause)  # fmt: skip
            if self._stop.wait(pause):
                return
            self._launch()
            log.info("training worker started again (pid %d)", self.pid)


def stop_worker_process(process: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    if process.poll() is None:
        process.terminate()  # the worker stops its job, which resumes on the next start
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
