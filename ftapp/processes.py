"""Child processes, the few things every part that starts one needs: a free loopback port for
it, stopping it with its whole process group, and, from inside a child, watching the parent
that started it so the child does not outlive it.

A job's child process (training, an export) starts through `job_child_main`, which hands any
failure to the caller to record on the job's row, so a job never ends without a reason.

The processes this serves (the training worker and its jobs, the vLLM server, a check's
program, the app in tests and benchmarks) are each started with `start_new_session=True`, so
each leads a process group of its own and a signal to the group reaches everything it
started. Standard library only: the bottom layer, importable from anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it; another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def signal_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Send `sig` to every process of group `pgid`. False if the group has no process left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def stop_process_group(process: subprocess.Popen, grace_s: float) -> int:
    """Stop `process` and everything in its process group; return its exit code.

    SIGTERM first, so that it can stop cleanly (a training job saves nothing on SIGKILL, the
    app stops its worker and server), then, after up to `grace_s` seconds, SIGKILL to
    whatever of the group is left: the leader if it hung, and any child it left behind (an
    engine process whose parent is gone). A process that already exited gets no SIGTERM,
    but its leftovers still get the SIGKILL.
    """
    if process.poll() is None:
        signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    # PermissionError: a group whose last members are zombies (macOS) or not ours any more.
    with contextlib.suppress(PermissionError):
        signal_group(process.pid, signal.SIGKILL)
    return process.wait()


def exit_reason(returncode: int) -> str:
    """How a process ended, in words: its exit status or the signal that killed it."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (often the out-of-memory killer)" if name == "SIGKILL" else ""
        return f"signal {name}{hint}"
    return f"exit status {returncode}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        state = stat.rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state != "Z"


def watch_parent(
    parent_pid: int,
    on_gone: Callable[[], None],
    every_s: float,
    until: threading.Event | None = None,
) -> threading.Thread:
    """Call `on_gone` once, from a daemon thread, when this process's parent is no longer
    `parent_pid` (it died and the process was handed to another). Checks every `every_s`
    seconds; with `until`, the watch ends when that event is set. Returns the started thread.

    Polling the parent pid rather than a signal (prctl's PR_SET_PDEATHSIG): it works the same
    for every child, however it was started, and needs nothing beyond the standard library.
    """
    stop = until or threading.Event()

    def watch() -> None:
        while os.getppid() == parent_pid:
            if stop.wait(every_s):
                return
        on_gone()

    thread = threading.Thread(target=watch, daemon=True, name="ftapp-parent-watch")
    thread.start()
    return thread


def job_child_main(
    argv: list[str] | None,
    run: Callable[[Any], int | None],
    record_failure: Callable[[Any, BaseException], None],
    *,
    exit_failed: int,
    quiet_errors: tuple[type[BaseException], ...] = (),
    parse: Callable[[str], Any] = int,
) -> int:
    """The entry point of a job's child process, `python -m ... JOB_ID` (or another argument,
    read by `parse`): log to stderr, run the job, and hand any failure (but Ctrl-C and exit)
    to `record_failure`, which writes the job's reason, then exit with `exit_failed`. A
    traceback goes to the log unless the failure is one of `quiet_errors` (a refusal the
    reason says all about)."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    job_id = parse(argv[0])
    try:
        return run(job_id) or 0
    except BaseException as exc:  # every failure ends the job with a reason, then exits
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        if not isinstance(exc, quiet_errors):
            traceback.print_exc()
        record_failure(job_id, exc)
        return exit_failed
