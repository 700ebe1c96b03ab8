"""`ftapp export ...`: merged model folders and Hugging Face Hub pushes from a terminal, on the
same core functions as the web app.

ftapp export merge NAME [--out DIR] [--no-wait]
ftapp export push NAME REPO_ID [--merged] [--public] [--no-wait]
                                                  (token: HF_TOKEN or `hf auth login`)
ftapp export list NAME [--json]

A merge or push is an export job with a row, as from the Deploy tab. The command queues it and
then runs it itself, here, printing its log as it goes (a worker that took it first runs it
instead, and the command follows it): so it works with no worker running. --no-wait only
queues it for the worker (`ftapp worker`, or the one the web app starts).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ftapp.cli.common import print_result, services, user


def add_export_commands(commands: Any) -> None:
    export = commands.add_parser("export", help="merge an adapter, push to the Hugging Face Hub")
    actions = export.add_subparsers(title="actions")

    merge = actions.add_parser("merge", help="merge an adapter into its base model (a folder)")
    merge.add_argument("name", help="the adapter or checkpoint (model variant name)")
    merge.add_argument(
        "--out", type=Path, help="the folder (default FTAPP_HOME/exports/NAME-merged)"
    )
    merge.add_argument("--no-wait", action="store_true", help="queue it for the worker, return")
    merge.set_defaults(handler=_merge)

    push = actions.add_parser("push", help="push an adapter (or the merged model) to the Hub")
    push.add_argument("name", help="the adapter or checkpoint (model variant name)")
    push.add_argument("repo_id", help="the Hub model repo, owner/name (created if needed)")
    push.add_argument("--merged", action="store_true", help="push the merged model instead")
    push.add_argument("--public", action="store_true", help="a public repo (default private)")
    push.add_argument("--no-wait", action="store_true", help="queue it for the worker, return")
    push.set_defaults(handler=_push)

    listing = actions.add_parser("list", help="where a model variant was exported, newest first")
    listing.add_argument("name")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)


def _merge(args: argparse.Namespace) -> int:
    from ftapp.deploy.export_jobs import queue_merge

    app = services()
    with app.db() as db:
        job = queue_merge(db, app.settings, args.name, user(), args.out)
    return _run_or_queue(app, job, args.no_wait)


def _push(args: argparse.Namespace) -> int:
    from ftapp.deploy.export_jobs import queue_push

    app = services()
    with app.db() as db:
        job = queue_push(db, app.settings, args.name, args.repo_id, user(), merged=args.merged,
                         private=not args.public)  # fmt: skip
    return _run_or_queue(app, job, args.no_wait)


def _run_or_queue(app: Any, job: Any, no_wait: bool) -> int:
    """Run the queued job here (unless a worker took it first), its log on stderr; print its
    result line. A failure is raised as the job's reason (one line, status 2)."""
    import threading

    from ftapp.deploy.export_jobs import describe, follow_export
    from ftapp.errors import FtappError
    from ftapp.store.export_jobs import claim_next_export_job
    from ftapp.training.worker import run_export_child

    print(f"queued export job #{job.id}", file=sys.stderr)
    if no_wait:
        return 0
    worker_id = f"{user()}:{os.getpid()}"  # who runs it, as a worker's host:pid
    with app.db() as db:
        claimed = claim_next_export_job(db, worker_id, job_id=job.id)
    stopping = threading.Event()
    runner = None
    if claimed is not None:
        runner = threading.Thread(target=run_export_child, args=(app.settings, claimed, stopping),
                                  name="export-job", daemon=True)  # fmt: skip
        runner.start()
    else:
        print(f"a worker took export job #{job.id}; following it", file=sys.stderr)
    try:
        done = follow_export(app.db, job.id, lambda line: print(line, file=sys.stderr))
    except KeyboardInterrupt:
        stopping.set()  # ours is stopped and marked failed; a worker's goes on
        if runner is not None:
            runner.join()
        raise
    if runner is not None:
        runner.join()
    if done.status.value != "succeeded":
        raise FtappError(done.error or f"export job #{done.id} {done.status.value}")
    print(describe(done))
    return 0


def _list(args: argparse.Namespace) -> int:
    from ftapp.store.exports import exports_of

    with services().db() as db:
        rows = exports_of(db, args.name)
    lines = [f"{r['created_at']}  {r['kind']:<12} {r['url'] or r['target']}  by {r['created_by']}"
             for r in rows]  # fmt: skip
    print_result(rows, args.json, "\n".join(lines) or f"{args.name} has not been exported")
    return 0
