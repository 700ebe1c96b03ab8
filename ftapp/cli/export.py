"""`ftapp export ...`: merged model folders and Hugging Face Hub pushes from a terminal, on the
same core functions as the web app.

ftapp export merge NAME [--out DIR]
ftapp export push NAME REPO_ID [--merged] [--public]   (token: HF_TOKEN or `hf auth login`)
ftapp export list NAME [--json]
"""

from __future__ import annotations

import argparse
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
    merge.set_defaults(handler=_merge)

    push = actions.add_parser("push", help="push an adapter (or the merged model) to the Hub")
    push.add_argument("name", help="the adapter or checkpoint (model variant name)")
    push.add_argument("repo_id", help="the Hub model repo, owner/name (created if needed)")
    push.add_argument("--merged", action="store_true", help="push the merged model instead")
    push.add_argument("--public", action="store_true", help="a public repo (default private)")
    push.set_defaults(handler=_push)

    listing = actions.add_parser("list", help="where a model variant was exported, newest first")
    listing.add_argument("name")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)


def _merge(args: argparse.Namespace) -> int:
    from ftapp.deploy.merge import merge_adapter

    app = services()
    with app.db() as db:
        out = merge_adapter(db, app.settings, args.name, user(), args.out)
    print(f"merged {args.name} into {out}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from ftapp.deploy.hub import push_to_hub

    app = services()
    with app.db() as db:
        url = push_to_hub(db, app.settings, args.name, args.repo_id, user(), merged=args.merged,
                          private=not args.public)  # fmt: skip
    print(f"pushed {args.name}{' (merged)' if args.merged else ''} to {url}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ftapp.store.exports import exports_of

    with services().db() as db:
        rows = exports_of(db, args.name)
    lines = [f"{r['created_at']}  {r['kind']:<12} {r['url'] or r['target']}  by {r['created_by']}"
             for r in rows]  # fmt: skip
    print_result(rows, args.json, "\n".join(lines) or f"{args.name} has not been exported")
    return 0
