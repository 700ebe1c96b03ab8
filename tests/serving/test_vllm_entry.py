"""The vLLM server dies with the app that started it: the app is killed with SIGKILL and the
server's whole process group (API server, engine process) is gone within seconds, also while
vLLM is still starting (SIGTERM then left it hung for good: issue "Faults"). First with a
stand-in server module that starts a child of its own, then with the real vLLM (slow)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from tests.training.conftest import wait_for

# An "app": a supervised VllmServer started as the app starts it (with a stand-in for vLLM's
# command if one is given), which prints the server's pid and waits to be killed.
APP = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ftapp.serving import vllm_server
    model, log, *stand_in = sys.argv[1:]
    if stand_in:
        vllm_server.server_command = lambda options, port, cuda: stand_in
    options = vllm_server.VllmOptions(model_path=Path(model), log_path=Path(log),
                                      max_lora_rank=8, threads=1)
    server = vllm_server.VllmServer(options)
    server.start()
    while server.pid is None:
        time.sleep(0.05)
    print(server.pid, flush=True)
    time.sleep(600)
""")
# A server that, like vLLM, starts an engine process in its own process group and runs on.
FAKE_SERVER = textwrap.dedent("""
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    time.sleep(600)
""")


def group_of(pgid: int) -> list[psutil.Process]:
    """The live (not zombie) processes of a process group."""
    found = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != "zombie":
                found.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def start_stand_in_app(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    """The APP script above (not the real app: tests/live_app.py starts that); its server pid."""
    app = subprocess.Popen([sys.executable, "-c", APP, *args], env=env,
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
    return app, int(app.stdout.readline())


def kill_all(app: subprocess.Popen, server_pid: int) -> None:
    app.kill()
    app.wait()
    for process in group_of(server_pid):
        process.kill()


def test_the_server_and_its_engine_go_when_the_app_is_killed(tmp_path):
    (tmp_path / "fake_server.py").write_text(FAKE_SERVER)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    stand_in = [sys.executable, "-m", "ftapp.serving.vllm_entry", "fake_server"]
    app, server = start_stand_in_app([str(tmp_path), str(tmp_path / "log"), *stand_in], env)
    try:
        wait_for(lambda: len(group_of(server)) == 2, "the server and its engine process", 30)
        time.sleep(1)  # the server runs on while the app lives
        assert len(group_of(server)) == 2
        app.send_signal(signal.SIGKILL)
        app.wait()
        wait_for(lambda: not group_of(server), "the server group to die with the app", 30)
    finally:
        kill_all(app, server)


@pytest.mark.slow
def test_a_starting_vllm_server_goes_when_the_app_is_killed(bundled_model_dir, tmp_path):
    args = [str(bundled_model_dir), str(tmp_path / "vllm.log")]
    app, server = start_stand_in_app(args, dict(os.environ))
    try:
        # The engine process exists, and a few seconds later vLLM is loading the model, long
        # before it is ready: a SIGTERM then left the old server hung (in 3 of 3 tries).
        wait_for(lambda: any("EngineCore" in " ".join(p.cmdline()) for p in group_of(server)),
                 "vLLM's engine process", 300)  # fmt: skip
        time.sleep(5)
        app.send_signal(signal.SIGKILL)
        app.wait()
        wait_for(lambda: not group_of(server), "the vLLM server group to die with the app", 30)
    finally:
        kill_all(app, server)
