"""Merges and Hub pushes for the web app, in a child process: the web process never loads
model weights (merging a 7B model takes tens of GB), and a merge that crashes or runs out of
memory fails with its reason while the app goes on.

    python -m ftapp.deploy.child '{"action": "merge", "model": "secret", "user": "ann"}'

The child reads FTAPP_HOME like every ftapp process, runs the same core functions as
`ftapp export`, prints one line on success and `error: ...` on failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from ftapp.errors import FtappError, ServingError
from ftapp.settings import Settings

TIMEOUT_S = 3 * 3600  # a merge of a large model on a CPU, then an upload


def run_export(
    settings: Settings,
    action: str,
    model: str,
    user: str,
    *,
    repo_id: str = "",
    merged: bool = False,
    private: bool = True,
    token: str | None = None,
    timeout_s: float = TIMEOUT_S,
) -> str:
    """Merge (action "merge") or push (action "push") `model` in a child process; returns its
    line for people. Its error, if any, is raised as an FtappError with the child's message."""
    request = {"action": action, "model": model, "user": user, "repo_id": repo_id,
               "merged": merged, "private": private}  # fmt: skip
    env = {**os.environ, "FTAPP_HOME": str(settings.home)}
    if token:  # given in the page; otherwise the child finds HF_TOKEN or the saved login
        env["HF_TOKEN"] = token
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ftapp.deploy.child", json.dumps(request)],
            env=env, capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ServingError(
            f"{action} of {model!r} took over {timeout_s:.0f} s and was stopped"
        ) from None
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode == 0 and lines:
        return lines[-1]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    if errors:
        raise FtappError(errors[-1].removeprefix("error: "))
    tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
    raise ServingError(f"{action} of {model!r} failed (exit {done.returncode}): {tail[0]}")


def _run(request: dict[str, Any]) -> str:
    from ftapp.settings import load_settings
    from ftapp.store.db import open_db

    settings = load_settings()
    db = open_db(settings.db_path)
    try:
        if request["action"] == "merge":
            from ftapp.deploy.merge import merge_adapter

            path = merge_adapter(db, settings, request["model"], request["user"])
            return f"merged {request['model']} into {path}"
        if request["action"] == "push":
            from ftapp.deploy.hub import push_to_hub

            url = push_to_hub(db, settings, request["model"], request["repo_id"],
                              request["user"], merged=bool(request["merged"]),
                              private=bool(request["private"]))  # fmt: skip
            return f"pushed {request['model']} to {url}"
        raise FtappError(f"unknown export action {request['action']!r}")
    finally:
        db.close()


def main(argv: list[str]) -> int:
    try:
        print(_run(json.loads(argv[1])), flush=True)
    except FtappError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
