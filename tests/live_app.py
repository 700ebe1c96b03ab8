"""The real web app in a subprocess, for tests that drive it over HTTP (gradio_client) or with a
browser (Playwright): `python app.py` with a fresh FTAPP_HOME (its models folder linked to the
prepared bundled model) on a free loopback port, stopped afterwards.

    with running_app(tmp_path / "home", models_dir) as app:
        Client(app.url) ...
        sqlite3.connect(app.db_path) ...

Test modules wrap it in a module-scoped fixture, so that one app serves every test of the
module (each test then works in its own dataset):

    @pytest.fixture(scope="module")
    def app(tmp_path_factory, models_dir):
        with running_app(tmp_path_factory.mktemp("live") / "home", models_dir) as live:
            yield live
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_CHARS = 4000


@dataclass(frozen=True)
class LiveApp:
    url: str  # ends with "/"
    home: Path
    log_path: Path
    process: subprocess.Popen

    @property
    def db_path(self) -> Path:
        return self.home / "ftapp.db"

    def connect(self) -> sqlite3.Connection:
        """A connection to the app's database that refuses writes, rows as sqlite3.Row.

        A normal connection with query_only rather than `?mode=ro`, so that it takes part in
        WAL locking like the app's own connections do."""
        conn = sqlite3.connect(self.db_path, timeout=30)
        conn.execute("PRAGMA query_only = ON")
        conn.row_factory = sqlite3.Row
        return conn

    def query(self, sql: str, params: tuple | list = ()) -> list[dict]:
        conn = self.connect()
        try:
            return [dict(row) for row in conn.execute(sql, params)]
        finally:
            conn.close()

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_app(
    home: Path,
    models_dir: Path | None,
    extra_env: dict[str, str] | None = None,
    app_dir: Path = REPO,
) -> Iterator[LiveApp]:
    """Start `python app.py` on a fresh FTAPP_HOME and yield it once the root URL answers 200.

    Generation runs in-process (FTAPP_BACKEND=hf, the model loaded on the first request)
    unless extra_env says otherwise, so that tabs not about serving don't start vLLM.

    `models_dir` None leaves the home's models folder alone (the app prepares the bundled
    model itself); `app_dir` is where `app.py` is run (the Space bundle runs its own).

    Fails the test (with the app's log tail) if the app exits or isn't up within 120 s.
    Gradio's upload cache and the app's download folders go under the same temporary folder,
    so nothing is left in the machine's /tmp.
    """
    home.mkdir(parents=True, exist_ok=True)
    models_link = home / "models"
    if models_dir is not None and not models_link.exists():
        models_link.symlink_to(Path(models_dir).resolve(), target_is_directory=True)
    scratch = home.parent / f"{home.name}-tmp"
    scratch.mkdir(exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "FTAPP_HOME": str(home),
        "FTAPP_HOST": "127.0.0.1",
        "FTAPP_PORT": str(port),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(scratch / "gradio"),
        "TMPDIR": str(scratch),
        "PYTHONUNBUFFERED": "1",
        "FTAPP_BACKEND": "hf",
        **(extra_env or {}),
    }
    log_path = home.parent / f"{home.name}-app.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=app_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopping it stops its children too
        )
    app = LiveApp(f"http://127.0.0.1:{port}/", home, log_path, process)
    try:
        _wait_until_up(app)
        yield app
    finally:
        _stop(process)


def _wait_until_up(app: LiveApp) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        code = app.process.poll()
        if code is not None:
            pytest.fail(f"the app exited with code {code} before it answered:\n{app.log_tail()}")
        try:
            with urllib.request.urlopen(app.url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the app did not answer {app.url} within {START_TIMEOUT_S:.0f} s:\n"
                        f"{app.log_tail()}")  # fmt: skip
        time.sleep(0.25)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT_S)
