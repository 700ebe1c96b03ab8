"""`ftapp keys ...`: the API keys a team's services call production with (ftapp/api.py).

ftapp keys create NAME [--model production|NAME ...] [--rate N]   prints the key, once
ftapp keys list [--json]
ftapp keys revoke NAME
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from ftapp.cli.common import print_result, services, user


def add_keys_commands(commands: Any) -> None:
    keys = commands.add_parser("keys", help="API keys for the OpenAI-compatible endpoint")
    actions = keys.add_subparsers(title="actions")
    create = actions.add_parser("create", help="make a key (shown once)")
    create.add_argument("name")
    create.add_argument("--model", action="append", default=None,
                        help='a model it may call (repeat; default production; * any)')  # fmt: skip
    create.add_argument("--rate", type=int, default=None, help="requests a minute (no limit)")
    create.set_defaults(handler=_create)
    listing = actions.add_parser("list", help="every key, revoked ones too")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)
    revoke = actions.add_parser("revoke", help="a revoked key opens nothing")
    revoke.add_argument("name")
    revoke.set_defaults(handler=_revoke)


def _create(args: argparse.Namespace) -> int:
    from ftapp.deploy.api_keys import create_key

    with services().db() as db:
        key, secret = create_key(db, args.name, user(), args.model, args.rate)
    rate = f"{key.rate_per_min} requests a minute" if key.rate_per_min else "no rate limit"
    print(f"{secret}\n\nkey {key.name}: models {', '.join(key.models)}, {rate}. Keep it now: "
          "it is not stored and can't be shown again.")  # fmt: skip
    return 0


def _list(args: argparse.Namespace) -> int:
    from ftapp.deploy.api_keys import list_keys

    with services().db() as db:
        keys = list_keys(db)
    lines = [f"{k.name:<24} {k.prefix}…  {', '.join(k.models):<24} "
             f"{k.rate_per_min or '-'}/min  "
             + (f"revoked {k.revoked_at[:16]} by {k.revoked_by}" if k.revoked_at
                else f"last used {(k.last_used_at or 'never')[:16]}")
             for k in keys]  # fmt: skip
    print_result([asdict(k) for k in keys], args.json, "\n".join(lines) or "no API keys")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from ftapp.deploy.api_keys import revoke_key

    with services().db() as db:
        revoke_key(db, args.name, user())
    print(f"key {args.name} is revoked")
    return 0
