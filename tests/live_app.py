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

The scripts in benchmarks/ start the same app with the same pieces (app_env, start_app,
wait_until_up, stop_app), through benchmarks/running_app.py; this module is their one copy.
"""

from __future__ import annotations

import os
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

from ftapp.processes import free_port, stop_process_group

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
        return log_tail(self.log_path, chars)


class AppFailed(RuntimeError):
    """The app exited, or did not answer, before it was up; the message ends with its log."""


def link_models(home: Path, models_dir: Path) -> None:
    """Make `home` (created if need be) a home whose models folder is `models_dir`, the
    prepared bundled model's: a link, no copy, no conversion."""
    home.mkdir(parents=True, exist_ok=True)
    models_link = home / "models"
    if not models_link.exists():
        models_link.symlink_to(Path(models_dir).resolve(), target_is_directory=True)


def app_env(home: Path, port: int, **settings: str) -> dict[str, str]:
    """The environment `python app.py` runs with: this home on this loopback port, offline,
    Gradio's uploads and every temporary file under a scratch folder beside the home (so
    nothing is left in the machine's /tmp), drift probes off (240 background generations
    after each training job would slow every test that trains; the drift tests turn them on)
    and `settings` (FTAPP_* values) on top."""
    scratch = home.parent / f"{home.name}-tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "FTAPP_HOME": str(home),
        "FTAPP_HOST": "127.0.0.1",
        "FTAPP_PORT": str(port),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(scratch / "gradio"),
        "TMPDIR": str(scratch),
        "PYTHONUNBUFFERED": "1",
        "FTAPP_DRIFT_PROBES": "0",
        **settings,
    }


def start_app(env: dict[str, str], log_path: Path, app_dir: Path = REPO) -> subprocess.Popen:
    """`python app.py` (run in `app_dir`) in its own process group, so that stop_app stops its
    children too, its output appended to `log_path`. Returns at once: wait_until_up."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "app.py"], cwd=app_dir, env=env, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


def answers(url: str) -> bool:
    """Whether `url` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def wait_until_up(
    url: str, process: subprocess.Popen, log_path: Path, timeout_s: float = START_TIMEOUT_S
) -> None:
    """Until `url` answers 200. AppFailed, with the log's tail, if the app exits first or time
    runs out (a guard against hanging, not a speed check)."""
    deadline = time.monotonic() + timeout_s
    while True:
        code = process.poll()
        if code is not None:
            raise AppFailed(f"the app exited with code {code} before {url} answered:\n"
                            f"{log_tail(log_path)}")  # fmt: skip
        if answers(url):
            return
        if time.monotonic() > deadline:
            raise AppFailed(f"the app did not answer {url} within {timeout_s:.0f} s:\n"
                            f"{log_tail(log_path)}")  # fmt: skip
        time.sleep(0.25)


def log_tail(log_path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        return log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def stop_app(process: subprocess.Popen, grace_s: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM to the app's process group (the app stops its worker and vLLM server), then
    SIGKILL to whatever of the group is left after `grace_s` seconds; its exit code."""
    return stop_process_group(process, grace_s)


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
    """
    home.mkdir(parents=True, exist_ok=True)
    if models_dir is not None:
        link_models(home, models_dir)
    port = free_port()
    env = app_env(home, port, **{"FTAPP_BACKEND": "hf", **(extra_env or {})})
    log_path = home.parent / f"{home.name}-app.log"
    process = start_app(env, log_path, app_dir)
    app = LiveApp(f"http://127.0.0.1:{port}/", home, log_path, process)
    try:
        try:
            wait_until_up(app.url, process, log_path)
        except AppFailed as failed:
            pytest.fail(str(failed))
        yield app
    finally:
        stop_app(process)
