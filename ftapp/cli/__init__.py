"""The `ftapp` command: the same core functions the web app calls, from a terminal.

    ftapp serve [--host H] [--port P]
    ftapp models prepare | list | add SOURCE [--name N]
    ftapp data import PATH --dataset NAME [--format auto|...] [--on-error skip|abort]
    ftapp data list | stats NAME | split NAME | label NAME | freeze NAME | versions NAME
    ftapp data export NAME --out FILE [--format messages|prompt_completion] [--version V]
    ftapp train CONFIG.yaml [--wait] | ftapp train --preset NAME --dataset-version D@v1
    ftapp jobs list | show ID | cancel ID
    ftapp worker [--device cpu|cuda:0]
    ftapp arena ...  (see ftapp/cli/arena.py)
    ftapp deploy promote NAME | rollback | status | monitor  (see ftapp/cli/deploy.py)
    ftapp keys create NAME [--model M] [--rate N] | list | revoke NAME  (ftapp/cli/keys.py)
    ftapp eval ...  (see ftapp/cli/eval.py)
    ftapp export merge NAME | push NAME REPO_ID | list NAME  (see ftapp/cli/export.py)
    ftapp users | backup | export-all | restore | spaces ...  (see ftapp/cli/admin.py)

Errors print one line to stderr and exit with status 2; nothing is left half-written.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ftapp.cli.admin import add_admin_commands
from ftapp.cli.arena import add_arena_commands
from ftapp.cli.data import add_data_commands
from ftapp.cli.deploy import add_deploy_commands
from ftapp.cli.eval import add_eval_commands
from ftapp.cli.export import add_export_commands
from ftapp.cli.keys import add_keys_commands
from ftapp.cli.models import add_models_commands
from ftapp.cli.training import add_training_commands
from ftapp.errors import FtappError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except FtappError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ftapp jobs list | head`: the reader has what it wanted
        sys.stderr.close()
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftapp", description="Fine-tune language models.")
    commands = parser.add_subparsers(title="commands")

    add_models_commands(commands)
    add_data_commands(commands)
    add_training_commands(commands)
    add_arena_commands(commands)
    add_eval_commands(commands)
    add_export_commands(commands)
    add_deploy_commands(commands)
    add_keys_commands(commands)
    add_admin_commands(commands)
    return parser
