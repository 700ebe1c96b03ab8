"""`ftapp serve` and `ftapp models ...`: start the web app, prepare and register base models."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from ftapp.cli.common import print_result as _print
from ftapp.cli.common import services as _services


def add_models_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="start the web app")
    serve.add_argument("--host", help="interface to bind (default FTAPP_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default FTAPP_PORT or 7860)")
    serve.add_argument("--no-worker", action="store_true",
                       help="no training worker beside the app (FTAPP_WORKER=0)")  # fmt: skip
    serve.set_defaults(handler=_serve)

    models = commands.add_parser("models", help="base models").add_subparsers(title="actions")
    models.add_parser("prepare", help="prepare the bundled model").set_defaults(
        handler=_models_prepare
    )
    listing = models.add_parser("list", help="list base models")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_models_list)
    add = models.add_parser("add", help="register a local model folder or a hub id")
    add.add_argument("source")
    add.add_argument("--name")
    add.set_defaults(handler=_models_add)


def _serve(args: argparse.Namespace) -> int:
    from ftapp.ui.app import main as serve

    serve(host=args.host, port=args.port, with_worker=not args.no_worker)
    return 0


def _models_prepare(args: argparse.Namespace) -> int:
    from ftapp.models.bundled import prepare_bundled_model

    services = _services()
    path = prepare_bundled_model(services.settings.models_dir)
    print(f"bundled model ready: {path}")
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from ftapp.models.registry import list_base_models

    services = _services()
    with services.db() as db:
        models = list_base_models(db, services.settings.models_dir)
    rows = [{**asdict(m), "path": str(m.path)} for m in models]
    _print(rows, args.json, "\n".join(f"{m.name}\t{m.source}\t{m.path}" for m in models))
    return 0


def _models_add(args: argparse.Namespace) -> int:
    from ftapp.models.registry import add_base_model

    services = _services()
    with services.db() as db:
        model = add_base_model(db, services.settings.models_dir, args.source, name=args.name)
    print(f"registered {model.name} ({model.source}): {model.path}")
    return 0
