"""The vLLM server process the app starts: `python -m ftapp.serving.vllm_entry MODULE ARGS...`
runs vLLM's server module (vllm.entrypoints.openai.api_server) in this process, with one
thing added: a watch on the app that started it. When that app is gone (killed -9, crashed),
the whole server goes at once: this process and vLLM's engine process, which share its
process group (the app starts the server as a session of its own).

vLLM's own signal handling can't be relied on for this: a SIGTERM that arrives while vLLM is
starting (loading the model, its engine handshake) leaves it hung for good, holding its memory
(on a GPU, its share of the GPU), and a SIGKILL of the API server alone leaves its engine
process running. The app's pid comes in FTAPP_VLLM_PARENT_PID.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys

from ftapp.processes import watch_parent

PARENT_ENV = "FTAPP_VLLM_PARENT_PID"
WATCH_SECONDS = 0.5


def kill_server() -> None:
    """Kill this process and its group (the engine process with it), at once."""
    # An inference server has nothing to save: SIGKILL, so a server stuck in start-up goes too.
    if os.getpgrp() == os.getpid():  # the group is the server's own (the app's start_new_session)
        os.killpg(0, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    module, *args = argv
    parent = os.environ.get(PARENT_ENV)
    if parent:
        watch_parent(int(parent), kill_server, WATCH_SECONDS)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
