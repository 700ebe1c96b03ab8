"""The real app for the scripts in benchmarks/ that drive it through gradio_client
(load_arena.py, faults.py): the launcher of tests/live_app.py, the one copy that tests and
benchmarks share (the environment, its own process group, a loopback port, Gradio's files and
TMPDIR under a scratch folder beside the home, waiting until a URL answers, stopping it), and
what only the benchmarks need: a signed-in Client, and the Arena both scripts judge in. The
scripts import it as a sibling module (`python benchmarks/X.py` puts benchmarks/ first on
sys.path); it puts the repository on sys.path for tests.live_app.
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for tests/
from tests.live_app import (  # noqa: E402  (after the path above)
    REPO,
    AppFailed,
    answers,
    app_env,
    free_port,
    link_models,
    log_tail,
    start_app,
    stop_app,
    wait_until_up,
)

__all__ = [  # the launcher's names, for the scripts to import from here
    "REPO", "AppFailed", "answers", "app_env", "free_port", "link_models", "log_tail",
    "start_app", "stop_app", "wait_until_up",
]  # fmt: skip
STOP_GRACE_S = 30  # the app stops its worker and its vLLM server (10 s each at most) first
CALL_TIMEOUT_S = 300  # one API call, queue wait included
CONTESTANTS = ["base", "concise", "pirate"]  # prepare_arena's


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
