"""`ftapp users | backup | export-all | restore | spaces`: running an ftapp installation.

ftapp users add NAME --role admin|reviewer [--password-stdin]
ftapp users list [--json] | remove NAME | reset NAME [--password-stdin] | role NAME ROLE
ftapp users log [--user NAME] [--limit N] [--json]   sign-in attempts, newest first
ftapp backup [--out FILE]         a consistent copy of the database (SQLite's backup API)
ftapp export-all OUT.zip          the database, uploads, adapters and exports in one zip
ftapp restore ZIP                 unpack such a zip into an empty FTAPP_HOME
ftapp spaces build OUT            assemble the Hugging Face Space bundle into OUT
"""

from __future__ import annotations

import argparse
import getpass
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ftapp.cli.common import print_result, services, user
from ftapp.errors import ValidationError


def add_admin_commands(commands: Any) -> None:
    users = commands.add_parser("users", help="who may sign in").add_subparsers(title="actions")
    add = users.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["admin", "reviewer"])
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin (scripts)")  # fmt: skip
    add.set_defaults(handler=_users_add)
    listing = users.add_parser("list", help="list users and roles")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_users_list)
    remove = users.add_parser("remove", help="remove a user (their votes and labels stay)")
    remove.add_argument("name")
    remove.set_defaults(handler=_users_remove)
    reset = users.add_parser("reset", help="set a new password")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true")
    reset.set_defaults(handler=_users_reset)
    role = users.add_parser("role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", choices=["admin", "reviewer"])
    role.set_defaults(handler=_users_role)
    log = users.add_parser("log", help="sign-in attempts, newest first")
    log.add_argument("--user", help="only this user name")
    log.add_argument("--limit", type=int, default=100)
    log.add_argument("--json", action="store_true")
    log.set_defaults(handler=_users_log)

    backup = commands.add_parser("backup", help="a consistent copy of the database")
    backup.add_argument("--out", type=Path, help="default FTAPP_HOME/backups/ftapp-<time>.db")
    backup.set_defaults(handler=_backup)
    export = commands.add_parser("export-all", help="everything in one zip")
    export.add_argument("out", type=Path)
    export.set_defaults(handler=_export_all)
    restore = commands.add_parser("restore", help="unpack an export-all zip into FTAPP_HOME")
    restore.add_argument("zip", type=Path)
    restore.set_defaults(handler=_restore)

    spaces = commands.add_parser("spaces", help="the Hugging Face Space bundle")
    build = spaces.add_subparsers(title="actions").add_parser("build", help="assemble it")
    build.add_argument("out", type=Path, help="an empty or new folder")
    build.set_defaults(handler=_spaces_build)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ValidationError("no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise ValidationError("the two passwords differ; nothing was changed")
    return first


def _users_add(args: argparse.Namespace) -> int:
    from ftapp.auth import add_user

    password = _password(args)
    with services().db() as db:
        add_user(db, args.name, args.role, password, user())
    print(f"added {args.name} ({args.role}); restart ftapp if it runs without users")
    return 0


def _users_list(args: argparse.Namespace) -> int:
    from ftapp.auth import list_users

    with services().db() as db:
        rows = [{k: v for k, v in asdict(u).items() if k != "password_hash"}
                for u in list_users(db)]  # fmt: skip
    text = "\n".join(f"{r['name']:<24} {r['role']:<9} added {r['created_at'][:10]}" for r in rows)
    print_result(rows, args.json, text or "no users: single-user mode on 127.0.0.1")
    return 0


def _users_remove(args: argparse.Namespace) -> int:
    from ftapp.auth import remove_user

    with services().db() as db:
        remove_user(db, args.name)
    print(f"removed {args.name}")
    return 0


def _users_reset(args: argparse.Namespace) -> int:
    from ftapp.auth import reset_password

    password = _password(args)
    with services().db() as db:
        reset_password(db, args.name, password)
    print(f"new password set for {args.name}")
    return 0


def _users_role(args: argparse.Namespace) -> int:
    from ftapp.auth import change_role

    with services().db() as db:
        change_role(db, args.name, args.role)
    print(f"{args.name} is now a {args.role}")
    return 0


def _users_log(args: argparse.Namespace) -> int:
    from ftapp.signin import sign_in_log

    with services().db() as db:
        attempts = sign_in_log(db, max(1, args.limit), args.user)
    text = "\n".join(f"{a.at[:19]}  {a.outcome:<14} {a.user_name:<24} from {a.address}"
                     for a in attempts)  # fmt: skip
    print_result([asdict(a) for a in attempts], args.json, text or "no sign-in attempts yet")
    return 0


def _backup(args: argparse.Namespace) -> int:
    from ftapp.backup import backup_database, write_periodic_backup

    settings = services().settings
    path = backup_database(settings.db_path, args.out) if args.out else None
    print(path or write_periodic_backup(settings))
    return 0


def _export_all(args: argparse.Namespace) -> int:
    from ftapp.backup import export_everything

    print(export_everything(services().settings, args.out))
    return 0


def _restore(args: argparse.Namespace) -> int:
    from ftapp.backup import restore_home
    from ftapp.settings import load_settings

    home = load_settings().home  # not Services: that would create a fresh database first
    restore_home(args.zip, home)
    print(f"restored into {home}")
    return 0


def _spaces_build(args: argparse.Namespace) -> int:
    from ftapp.spaces import build_space

    print(build_space(args.out))
    return 0
