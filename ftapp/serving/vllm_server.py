"""The vLLM server process the app starts and supervises: vLLM's OpenAI-compatible API server
for the base model, on loopback only, with LoRA enabled and adapters loadable at run time.

A supervisor thread starts it, polls /health, and restarts it when it exits or stops
answering (with a growing pause between tries). Its output goes to FTAPP_HOME/logs/vllm.log;
the status line shows how long start-up has taken and the log's latest line. The server is
stopped when the app exits, and kills itself, engine process included, when the app dies
(ftapp.serving.vllm_entry watches the app from inside the server).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ftapp.names import BASE
from ftapp.processes import free_port, stop_process_group
from ftapp.serving.backend import BackendState, BackendStatus
from ftapp.serving.vllm_entry import PARENT_ENV

log = logging.getLogger(__name__)

HEALTH_EVERY = 2.0  # seconds between health checks of a running server
FAILED_CHECKS_BEFORE_RESTART = 3  # a hung server is restarted after this many failed checks
RESTART_PAUSES = (1, 2, 5, 10, 30)  # seconds before each further restart try
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL at shutdown
MAX_TMPDIR_LENGTH = 50  # vLLM adds a 36-character socket name; sockets allow 107 bytes


def vllm_importable() -> tuple[bool, str]:
    """Whether vLLM can run here, and if not, why (the reason the UI shows)."""
    if importlib.util.find_spec("vllm") is None:
        return False, "vLLM is not installed in this environment"
    return True, ""


@dataclass(frozen=True)
class VllmOptions:
    model_path: Path
    log_path: Path
    max_lora_rank: int
    max_loras: int = 4  # adapters in one batch; more stay registered and are swapped in
    max_model_len: int = 2048
    port: int = 0  # 0: a free loopback port, chosen at each start
    kv_cache_gb: int = 1  # CPU only: VLLM_CPU_KVCACHE_SPACE
    gpu_memory_utilization: float = 0.5  # GPU only: the rest stays free for training
    threads: int = 0  # CPU only: cores for vLLM's OpenMP threads; 0: vLLM's default
    extra_args: tuple[str, ...] = ()  # more vLLM flags (FTAPP_VLLM_ARGS), appended last


def server_command(options: VllmOptions, port: int, cuda: bool) -> list[str]:
    # `python -m` rather than the `vllm` console script: with vllm-cpu the script looks up a
    # distribution named "vllm" and fails. vllm_entry runs vLLM's module in the same process,
    # watching the app (see there).
    command = [
        sys.executable, "-m", "ftapp.serving.vllm_entry", "vllm.entrypoints.openai.api_server",
        "--model", str(options.model_path), "--served-model-name", BASE,
        "--host", "127.0.0.1", "--port", str(port),
        "--enable-lora", "--max-lora-rank", str(options.max_lora_rank),
        "--max-loras", str(options.max_loras), "--max-model-len", str(options.max_model_len),
        "--disable-uvicorn-access-log",
    ]  # fmt: skip
    if cuda:
        command += ["--gpu-memory-utilization", str(options.gpu_memory_utilization)]
    return command + list(options.extra_args)


def server_env(options: VllmOptions) -> dict[str, str]:
    env = {
        **os.environ,
        # Adapters are added by POST /v1/load_lora_adapter, each time a job finishes.
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        "VLLM_CPU_KVCACHE_SPACE": str(options.kv_cache_gb),
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "TOKENIZERS_PARALLELISM": "false",
        # ftapp's grouped CPU LoRA ops (ftapp/serving/vllm_cpu_lora.py); no effect on CUDA.
        "FTAPP_VLLM_CPU_LORA": os.environ.get("FTAPP_VLLM_CPU_LORA", "1"),
        # The server kills itself, engine process included, once this process is gone.
        PARENT_ENV: str(os.getpid()),
    }
    if options.threads:
        env["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{options.threads - 1}"
    # vLLM puts its inter-process sockets in TMPDIR, and a socket path can't exceed 107 bytes:
    # a long TMPDIR (a test's, a CI runner's) makes every start fail.
    if len(tempfile.gettempdir()) > MAX_TMPDIR_LENGTH and Path("/tmp").is_dir():
        env["TMPDIR"] = "/tmp"
    return env


class VllmServer:
    """One supervised vLLM server. start() returns at once; status() says how far it is."""

    def __init__(self, options: VllmOptions, cuda: bool = False) -> None:
        self.options = options
        self.cuda = cuda
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen | None = None
        self._port = 0
        self._state = BackendState.STARTING
        self._detail = "launching"
        self._since = time.monotonic()
        self.starts = 0  # how many times a process was started (restarts = starts - 1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._supervise, name="vllm-supervisor",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    def status(self) -> BackendStatus:
        state, detail = self._state, self._detail
        if state == BackendState.STARTING:
            seconds = time.monotonic() - self._since
            detail = f"starting ({seconds:.0f} s): {self._last_log_line() or detail}"
        return BackendStatus("vllm", state, detail)

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            if self._state == BackendState.READY:
                return True
            time.sleep(0.5)
        return self._state == BackendState.READY

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=STOP_GRACE + 5)
        self._kill()

    # --- the supervisor thread -----------------------------------------------------------------

    def _supervise(self) -> None:
        failures = 0  # consecutive starts that never became ready
        while not self._stop.is_set():
            self._launch()
            became_ready = self._watch()
            self._kill()
            if self._stop.is_set():
                break
            failures = 0 if became_ready else failures + 1
            pause = RESTART_PAUSES[min(failures, len(RESTART_PAUSES) - 1)]
            log.warning("vLLM server down (%s); restarting in %d s", self._detail, pause)
            self._stop.wait(pause)

    def _launch(self) -> None:
        self._port = self.options.port or free_port()
        self.options.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.options.log_path.open("ab") as log_file:
            log_file.write(f"\n--- ftapp: starting vLLM on port {self._port}\n".encode())
            log_file.flush()
            self._process = subprocess.Popen(
                server_command(self.options, self._port, self.cuda),
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                env=server_env(self.options), start_new_session=True,
            )  # fmt: skip
        self.starts += 1
        self._state, self._detail = BackendState.STARTING, "launching"
        self._since = time.monotonic()
        log.info("vLLM server starting (pid %d, port %d)", self._process.pid, self._port)

    def _watch(self) -> bool:
        """Follow the running process until it exits or hangs; whether it ever became ready."""
        assert self._process is not None
        became_ready = False
        failed_checks = 0
        with httpx.Client(timeout=5.0) as client:
            while not self._stop.wait(HEALTH_EVERY if became_ready else 0.5):
                code = self._process.poll()
                if code is not None:
                    last = self._last_log_line()
                    self._state = BackendState.DOWN
                    self._detail = f"the server exited with code {code}" + (
                        f": {last}" if last else ""
                    )
                    return became_ready
                healthy = _healthy(client, self.url)
                if healthy:
                    failed_checks = 0
                    if not became_ready:
                        became_ready = True
                        seconds = time.monotonic() - self._since
                        log.info("vLLM server ready after %.0f s", seconds)
                    self._state = BackendState.READY
                    self._detail = f"vLLM at {self.url}, {self.options.model_path.name}"
                elif became_ready:
                    failed_checks += 1
                    if failed_checks >= FAILED_CHECKS_BEFORE_RESTART:
                        self._state = BackendState.DOWN
                        self._detail = "the server stopped answering its health check"
                        return True
        return became_ready

    def _kill(self) -> None:
        """End the server's whole process group: the API server and its engine process."""
        process = self._process
        if process is None:
            return
        # Whatever is left of the group (an engine process whose parent was killed) goes too.
        stop_process_group(process, STOP_GRACE)

    def _last_log_line(self) -> str:
        try:
            with self.options.log_path.open("rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - 4096))
                lines = handle.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        lines = [line.strip() for line in lines if line.strip()]
        return lines[-1][-200:] if lines else ""


def _healthy(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(f"{url}/health").status_code == 200
    except httpx.HTTPError:
        return False
