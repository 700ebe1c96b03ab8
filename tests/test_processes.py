"""ftapp.processes on real processes: a process group stopped as a whole (also a leader that
ignores SIGTERM, also a child its leader left behind), a parent watched from its child, and
a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from ftapp.processes import free_port, signal_group, stop_process_group, watch_parent

# Starts a child in its own process group (the same group), prints the child's pid, sleeps.
LEADER = textwrap.dedent("""
    import signal, subprocess, sys, time
    if sys.argv[1] == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                              " time.sleep(600)"])
    print(child.pid, flush=True)
    time.sleep(600)
""")


def start_group(mode: str) -> tuple[subprocess.Popen, int]:
    leader = subprocess.Popen([sys.executable, "-c", LEADER, mode], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)  # fmt: skip
    return leader, int(leader.stdout.readline())


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its new parent, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_leader_that_stops_on_sigterm_takes_its_leftovers_along():
    leader, child = start_group("stop-on-term")
    try:
        code = stop_process_group(leader, grace_s=10)
        assert code == -signal.SIGTERM  # SIGTERM came first, and was enough for the leader
        # The child ignores SIGTERM and was left behind: the SIGKILL after the leader ended it.
        assert wait_until(lambda: not alive(child))
    finally:
        signal_group(leader.pid, signal.SIGKILL)
        leader.stdout.close()


def test_a_leader_that_ignores_sigterm_is_killed_after_the_grace():
    leader, child = start_group("ignore-term")
    try:
        started = time.monotonic()
        code = stop_process_group(leader, grace_s=1)
        assert code == -signal.SIGKILL
        assert time.monotonic() - started >= 1  # it was given its grace first
        assert wait_until(lambda: not alive(child))
    finally:
        signal_group(leader.pid, signal.SIGKILL)
        leader.stdout.close()


def test_stopping_a_group_already_gone_returns_its_exit_code():
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"],
                               start_new_session=True)  # fmt: skip
    process.wait()
    assert stop_process_group(process, grace_s=1) == 3
    assert signal_group(process.pid, signal.SIGKILL) is False  # no group left to signal


# A child that watches its parent (the middle process) and writes a file when it is gone.
WATCHER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ftapp.processes import watch_parent
    marker, parent = Path(sys.argv[1]), int(sys.argv[2])
    watch_parent(parent, lambda: marker.write_text("parent gone"), 0.1)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
""")
# The parent: starts the watcher, passing its own pid (it may die before the watch starts).
MIDDLE = textwrap.dedent("""
    import os, subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], str(os.getpid())])
    time.sleep(600)
""")


def test_a_child_sees_its_parent_die(tmp_path: Path):
    marker = tmp_path / "marker"
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE, WATCHER, str(marker)])
    try:
        time.sleep(2)  # the watcher started and watches
        assert not marker.exists()  # the parent lives: nothing happened
        middle.kill()
        middle.wait()
        assert wait_until(marker.exists, 30)
        assert marker.read_text() == "parent gone"
    finally:
        middle.kill()


def test_the_watch_ends_when_told_to_and_calls_nothing():
    called = []
    until = threading.Event()
    # Our parent lives: nothing is called, and `until` ends the watch.
    thread = watch_parent(os.getppid(), lambda: called.append("ours"), 0.05, until=until)
    time.sleep(0.3)
    until.set()
    thread.join(5)
    assert not thread.is_alive() and not called
    # A parent we don't have (any more): called once, at once.
    gone = watch_parent(-1, lambda: called.append("gone"), 0.05)
    gone.join(5)
    assert called == ["gone"]


def test_free_port_can_be_bound_on_loopback():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
