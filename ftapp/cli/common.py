"""What every `ftapp` command shares: the services, who is acting, printing results,
generating background work from a terminal."""

from __future__ import annotations

import getpass
import json
import time
from typing import Any


def services():
    from ftapp.services import Services

    return Services.from_env()


def user() -> str:
    return f"cli:{getpass.getuser()}"


def print_result(value: Any, as_json: bool, text: str) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str) if as_json else text)


def generate_in_terminal(app: Any, work_lists: list, workers: int) -> int:
    """Generate the pending answers of `work_lists` here (what the web app's background
    thread does), once the engine is ready; stops the engine afterwards. Returns how many
    answers were attempted."""
    from ftapp.errors import ServingError
    from ftapp.generation.queue import generate_pending

    try:
        deadline = time.monotonic() + 600
        while not (status := app.backend.status()).is_ready:
            if time.monotonic() > deadline:
                raise ServingError(f"the engine did not get ready: {status.detail}")
            time.sleep(1)
        return generate_pending(app.db, app.stream_chat, work_lists, workers=workers)
    finally:
        app.backend.close()


def answer_progress_lines(row: dict[str, Any], middle: str = "") -> list[str]:
    """A session's or run's line of `ftapp arena sessions` / `ftapp eval runs` (name, status,
    answers generated, `middle`, contestants), then one line per reason answers failed."""
    answers = row["answers"]
    line = (f"{row['name']:<24} {row['status']:<10} answers {answers['done']}/"
            f"{answers['total']} ({answers['failed']} failed)  {middle}"
            f"{', '.join(row['contestants'])}")  # fmt: skip
    return [line] + [f"    failed: {reason}" for reason in row["failures"]]
