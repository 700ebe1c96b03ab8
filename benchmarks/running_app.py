"""The real app for the scripts in benchmarks/ that drive it through gradio_client
(load_arena.py, faults.py): `python app.py` on a prepared FTAPP_HOME, as tests/live_app.py
starts it for the tests (its own process group, a loopback port, Gradio's files and TMPDIR
under a scratch folder beside the home), waiting until a URL answers, a signed-in Client,
stopping it; and the Arena both scripts judge in. The scripts import it as a sibling module
(`python benchmarks/X.py` puts benchmarks/ first on sys.path).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CALL_TIMEOUT_S = 300  # one API call, queue wait included
CONTESTANTS = ["base", "concise", "pirate"]  # prepare_arena's


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def link_models(home: Path, models_dir: Path) -> None:
    """A fresh home whose models folder is the prepared bundled model's (no copy, no convert)."""
    home.mkdir(parents=True)
    (home / "models").symlink_to(models_dir.resolve(), target_is_directory=True)


def prepare_arena(services, session: str, prompts: int, overlap: int, admin: str) -> None:
    """Two prompt-engineered contestants beside the base model ("concise", "pirate"), all three
    in the free-battle pool, and an open evaluation session of base against concise on the
    prompts "question 0", "question 1", ..., whose answers are generated now, by `services`
    with the echo backend (judging a session battle never touches the engine at run time, so
    the answers' text doesn't matter)."""
    from ftapp.arena.contestants import add_prompt_variant, set_pool
    from ftapp.arena.generation import generate_pending
    from ftapp.arena.prompts import Prompt
    from ftapp.arena.sessions import create_session
    from ftapp.serving.backend import Sampling

    with services.db() as db:
        base = services.served_base
        add_prompt_variant(db, base, "concise", "Answer in one line.", user=admin)
        add_prompt_variant(db, base, "pirate", "Talk like a pirate.", user=admin)
        set_pool(db, base, CONTESTANTS, admin)
        items = [Prompt([{"role": "user", "content": f"question {i}"}]) for i in range(prompts)]
        create_session(
            db, base, name=session, prompts=items, source="benchmark",
            contestants=CONTESTANTS[:2], sampling=Sampling(temperature=0, max_new_tokens=16),
            overlap=overlap, user=admin,
        )  # fmt: skip
    generate_pending(services.db, services.stream_chat, workers=2)
    with services.db() as db:
        status = db.execute("SELECT status FROM eval_sessions WHERE name = ?", [session]).fetchone()
    if status[0] != "open":
        raise SystemExit(f"the session did not open after pre-generation (it is {status[0]})")


def app_env(home: Path, port: int, **settings: str) -> dict[str, str]:
    """The environment `python app.py` runs with: this home on this loopback port, offline,
    Gradio's uploads and every temporary file under a scratch folder beside the home, and
    `settings` (FTAPP_* values) on top."""
    scratch = home.parent / "scratch"
    scratch.mkdir(exist_ok=True)
    return {
        **os.environ, "FTAPP_HOME": str(home), "FTAPP_HOST": "127.0.0.1",
        "FTAPP_PORT": str(port), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(scratch / "gradio"), "TMPDIR": str(scratch),
        "PYTHONUNBUFFERED": "1", **settings,
    }  # fmt: skip


def start_app(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """`python app.py` in its own process group (stop_app ends the group), its output appended
    to log_path. Returns at once: wait_for the URL."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


def answers(url: str) -> bool:
    """Whether `url` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def wait_for(url: str, seconds: float, process: subprocess.Popen, log_path: Path) -> None:
    """Until `url` answers 200; SystemExit with the log's tail if the app exits or time runs
    out (a guard against hanging, not a speed check)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the app exited ({process.returncode}):\n{tail(log_path)}")
        if answers(url):
            return
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s:\n{tail(log_path)}")


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def stop_app(process: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM to the app's process group (the app stops its worker and vLLM server), then
    SIGKILL to whatever of the group is left after `grace` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


def sign_in(
    url: str, name: str, password: str, tls: ssl.SSLContext, timeout: float = CALL_TIMEOUT_S
):
    """A signed-in page of the app: its own Client (its own gr.State).

    gradio_client opens a new httpx client for most calls, and each one builds a TLS context
    from the CA bundle unless it is handed one: that took more CPU than the app under test
    (measured with py-spy). Loopback HTTP never uses it, so one context serves every call."""
    from gradio_client import Client

    return Client(url, auth=(name, password), verbose=False, download_files=False,
                  analytics_enabled=False, ssl_verify=tls,  # type: ignore[arg-type]
                  httpx_kwargs={"timeout": timeout})  # fmt: skip


def error_kind(exc: BaseException) -> str:
    """An exception as one short line, to count errors by kind."""
    message = " ".join(str(exc).split())[:80]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
