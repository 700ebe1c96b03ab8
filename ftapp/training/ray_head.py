"""A one-machine Ray cluster on 127.0.0.1: `ray start --head` with every server on loopback,
for trying the Ray path on one machine (the tests and benchmarks/bench_ray.py start theirs
here). A real cluster is started by its team (`ray start`, KubeRay, Anyscale); ftapp only
needs its job server's address (FTAPP_RAY_ADDRESS).
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

from ftapp.processes import free_port

LOOPBACK_ENV = {
    # Without this, Ray turns --node-ip-address=127.0.0.1 into the machine's other interface
    # (its clusters span machines); with it, every Ray server binds 127.0.0.1.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",  # a loopback cluster of one user: no token
    "RAY_USAGE_STATS_ENABLED": "0",
}


def ray_command(*args: str) -> list[str]:
    """This environment's `ray` command."""
    return [str(Path(sys.executable).parent / "ray"), *args]


class LocalRayHead:
    """`start()` a head node with `num_cpus` CPUs; `address` is its job server; `stop()`."""

    def __init__(self, num_cpus: int = 2, object_store_bytes: int = 500_000_000):
        self.num_cpus = num_cpus
        self.object_store_bytes = object_store_bytes
        # Short: Ray's socket paths must fit in 107 characters.
        self.temp_dir = Path(f"/tmp/ftapp-ray-{os.getpid()}")
        self.address = ""
        # The jobs' `python` is this environment's, as on a node with ftapp's dependencies.
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, **LOOPBACK_ENV,
                    "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip

    def start(self) -> str:
        dashboard = free_port()
        command = ray_command(
            "start", "--head", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
            f"--port={free_port()}", f"--dashboard-port={dashboard}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--ray-client-server-port={free_port()}", f"--num-cpus={self.num_cpus}",
            f"--object-store-memory={self.object_store_bytes}", "--disable-usage-stats",
            f"--temp-dir={self.temp_dir}",
        )  # fmt: skip
        subprocess.run(command, env=self.env, check=True, capture_output=True, timeout=180)
        self.address = f"http://127.0.0.1:{dashboard}"
        return self.address

    def processes(self) -> list:
        """This cluster's processes: those started with its temp dir (the GCS server, the
        raylet, the dashboard and its agents) and everything they started (Ray's workers)."""
        import psutil

        mine = []
        for process in psutil.process_iter(["cmdline"]):
            if str(self.temp_dir) in " ".join(process.info["cmdline"] or []):
                mine.append(process)
        for process in list(mine):
            with suppress(psutil.NoSuchProcess):
                mine.extend(process.children(recursive=True))
        return list({process.pid: process for process in mine}.values())

    def stop(self, timeout: float = 30.0) -> None:
        """Stop this cluster and wait until its processes are gone; any other Ray cluster on
        the machine (`ray stop` would end them all) is left alone."""
        import psutil

        processes = self.processes()
        for process in processes:
            with suppress(psutil.NoSuchProcess):
                process.terminate()
        _, alive = psutil.wait_procs(processes, timeout=timeout)
        for process in alive:
            with suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=10)
