"""The `ftapp` command: the same core functions the web app calls, from a terminal.

    ftapp serve [--host H] [--port P]
    ftapp models prepare | list | add SOURCE [--name N]
    ftapp data import PATH --dataset NAME [--format auto|...] [--on-error skip|abort]
    ftapp data list | stats NAME | split NAME | label NAME | freeze NAME | versions NAME
    ftapp data export NAME --out FILE [--format messages|prompt_completion] [--version V]
    ftapp train CONFIG.yaml [--wait] | ftapp train --preset NAME --dataset-version D@v1
    ftapp jobs list | show ID | cancel ID
    ftapp worker [--device cpu|cuda:0]
    ftapp arena ...  (see ftapp/cli_arena.py)
    ftapp deploy promote NAME | rollback | status | monitor  (see ftapp/cli_deploy.py)
    ftapp eval ...  (see ftapp/cli_eval.py)
    ftapp export merge NAME | push NAME REPO_ID | list NAME  (see ftapp/cli_export.py)
    ftapp users | backup | export-all | restore | spaces ...  (see ftapp/cli_admin.py)

Errors print one line to stderr and exit with status 2; nothing is left half-written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from ftapp.cli_admin import add_admin_commands
from ftapp.cli_arena import add_arena_commands
from ftapp.cli_common import print_result as _print
from ftapp.cli_common import services as _services
from ftapp.cli_common import user as _user
from ftapp.cli_deploy import add_deploy_commands
from ftapp.cli_eval import add_eval_commands
from ftapp.cli_export import add_export_commands
from ftapp.errors import FtappError
from ftapp.records import ExampleStatus, OnError, SourceFormat


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

    data = commands.add_parser("data", help="datasets").add_subparsers(title="actions")
    imp = data.add_parser("import", help="import a file into a dataset")
    imp.add_argument("path", type=Path)
    imp.add_argument("--dataset", required=True)
    imp.add_argument("--format", default="auto", choices=["auto", *SourceFormat])
    imp.add_argument("--on-error", default="skip", choices=list(OnError))
    imp.add_argument("--max-tokens", type=int, help="longest example kept (FTAPP_MAX_TOKENS)")
    imp.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                     help="CSV column mapping, e.g. --map prompt=question")  # fmt: skip
    imp.add_argument("--rejects-out", type=Path, help="write the rejected rows here (JSONL)")
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(handler=_data_import)

    listing = data.add_parser("list", help="list datasets")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_data_list)

    stats = data.add_parser("stats", help="counts per status, split and tag; versions")
    stats.add_argument("name")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=_data_stats)

    split = data.add_parser("split", help="assign train/validation/test splits")
    split.add_argument("name")
    split.add_argument("--ratios", default="0.8,0.1,0.1", help="train,validation,test")
    split.add_argument("--seed", type=int, default=0)
    split.set_defaults(handler=_data_split)

    label = data.add_parser("label", help="set the status of examples (all, or filtered)")
    label.add_argument("name")
    label.add_argument("--status", required=True, choices=list(ExampleStatus))
    label.add_argument("--where-status", choices=list(ExampleStatus))
    label.add_argument("--where-tag")
    label.add_argument("--where-search")
    label.add_argument("--ids", help="comma-separated example ids instead of filters")
    label.set_defaults(handler=_data_label)

    freeze = data.add_parser("freeze", help="freeze the accepted examples as a version")
    freeze.add_argument("name")
    freeze.add_argument("--note", default="")
    freeze.add_argument("--json", action="store_true")
    freeze.set_defaults(handler=_data_freeze)

    versions = data.add_parser("versions", help="list frozen versions")
    versions.add_argument("name")
    versions.add_argument("--json", action="store_true")
    versions.set_defaults(handler=_data_versions)

    export = data.add_parser("export", help="write examples as JSONL")
    export.add_argument("name")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--format", default="messages", choices=["messages", "prompt_completion"])
    export.add_argument("--version", help="a frozen version (3 or v3); default: accepted now")
    export.add_argument("--split", choices=["train", "validation", "test"])
    export.set_defaults(handler=_data_export)

    train = commands.add_parser("train", help="queue a training job from a YAML config")
    train.add_argument("config", type=Path, nargs="?", help="config YAML (see --preset)")
    train.add_argument("--preset", help="print a preset config as YAML and exit")
    train.add_argument("--dataset-version", default="DATASET@v1", help="for --preset")
    train.add_argument("--wait", action="store_true", help="wait until the job ends")
    train.add_argument("--json", action="store_true")
    train.set_defaults(handler=_train)

    jobs = commands.add_parser("jobs", help="training jobs").add_subparsers(title="actions")
    listing = jobs.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_jobs_list)
    show = jobs.add_parser("show", help="one job with its metrics")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_jobs_show)
    cancel = jobs.add_parser("cancel", help="cancel a job")
    cancel.add_argument("id", type=int)
    cancel.set_defaults(handler=_jobs_cancel)

    worker = commands.add_parser("worker", help="run training jobs from the queue")
    worker.add_argument("--device", default="cpu", help="cpu, or cuda:N (one job per device)")
    worker.add_argument("--gpus", type=int, default=1,
                        help="GPUs one job spans (accelerate launch, data parallel)")  # fmt: skip
    worker.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    worker.set_defaults(handler=_worker)

    add_arena_commands(commands)
    add_eval_commands(commands)
    add_export_commands(commands)
    add_deploy_commands(commands)
    add_admin_commands(commands)
    return parser


# --- serve and models ----------------------------------------------------------------------


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


# --- data ----------------------------------------------------------------------------------


def _data_import(args: argparse.Namespace) -> int:
    from ftapp.data.importer import ImportRejected, import_file, write_problems_jsonl

    services = _services()
    column_map = {}
    for pair in args.map:
        field, _, column = pair.partition("=")
        column_map[field.strip()] = column.strip()
    try:
        with services.db() as db:
            report = import_file(
                db,
                args.path,
                args.dataset,
                count_tokens=services.count_tokens,
                max_tokens=args.max_tokens or services.settings.max_tokens,
                fmt=args.format,
                on_error=args.on_error,
                column_map=column_map or None,
                max_bytes=services.max_upload_bytes,
                user=_user(),
            )
    except ImportRejected as exc:
        _report_problems(exc.report.problems)
        if args.rejects_out:
            write_problems_jsonl(exc.report.problems, args.rejects_out)
        raise
    if args.rejects_out:
        write_problems_jsonl(report.problems, args.rejects_out)
    if args.json:
        print(json.dumps({**asdict(report), "summary": report.summary()}, indent=2))
    else:
        print(report.summary())
        _report_problems(report.problems + report.duplicates)
    return 0


def _report_problems(problems: list) -> None:
    for problem in problems[:20]:
        print(f"  {problem.location}: {problem.reason}", file=sys.stderr)
    if len(problems) > 20:
        print(f"  ... and {len(problems) - 20} more", file=sys.stderr)


def _data_list(args: argparse.Namespace) -> int:
    from ftapp.store.datasets import list_datasets

    with _services().db() as db:
        rows = list_datasets(db)
    lines = [
        f"{r['name']}\t{r['examples']} examples ({r['accepted']} accepted, {r['pending']} "
        f"pending, {r['rejected']} rejected)\t{r['versions']} versions"
        for r in rows
    ]
    _print(rows, args.json, "\n".join(lines) or "no datasets yet")
    return 0


def _data_stats(args: argparse.Namespace) -> int:
    from ftapp.data.stats import dataset_stats

    with _services().db() as db:
        stats = dataset_stats(db, args.name)
    text = (
        f"{stats['name']}: {stats['examples']} examples\n"
        f"  status: {stats['by_status']}\n  split: {stats['by_split']}\n"
        f"  tags: {stats['by_tag']}\n  rejected rows at import: {stats['rejected_rows']}, "
        f"duplicates skipped: {stats['duplicates']}\n  versions: "
        + ", ".join(f"v{v['version']} ({v['n_examples']})" for v in stats["versions"])
    )
    _print(stats, args.json, text)
    return 0


def _data_split(args: argparse.Namespace) -> int:
    from ftapp.data.splits import assign_splits
    from ftapp.errors import ValidationError

    try:
        ratios = [float(part) for part in args.ratios.split(",")]
    except ValueError:
        raise ValidationError(f"--ratios must be three numbers, got {args.ratios!r}") from None
    with _services().db() as db:
        counts = assign_splits(db, args.name, ratios, args.seed)
    print(", ".join(f"{split}: {count}" for split, count in counts.items()))
    return 0


def _data_label(args: argparse.Namespace) -> int:
    from ftapp.data.review import set_status, set_status_where

    with _services().db() as db:
        if args.ids:
            ids = [int(part) for part in args.ids.split(",") if part.strip()]
            changed = set_status(db, ids, args.status, _user())
        else:
            changed = set_status_where(
                db, args.name, args.status, _user(),
                status=args.where_status, tag=args.where_tag, search=args.where_search,
            )  # fmt: skip
    print(f"{changed} examples set to {args.status}")
    return 0


def _data_freeze(args: argparse.Namespace) -> int:
    from ftapp.data.versions import freeze_version

    with _services().db() as db:
        version, created = freeze_version(db, args.name, _user(), args.note)
    state = "frozen" if created else "unchanged, same as"
    _print(
        {**asdict(version), "created": created},
        args.json,
        f"{state} {version.label}: {version.n_examples} examples ({version.n_train} train, "
        f"{version.n_validation} validation, {version.n_test} test), {version.content_hash[:12]}",
    )
    return 0


def _data_versions(args: argparse.Namespace) -> int:
    from ftapp.store.datasets import get_dataset
    from ftapp.store.versions import list_versions

    with _services().db() as db:
        versions = list_versions(db, get_dataset(db, args.name).id)
    lines = [f"{v.label}\t{v.n_examples} examples\t{v.content_hash[:12]}\t{v.created_at}"
             for v in versions]  # fmt: skip
    _print([asdict(v) for v in versions], args.json, "\n".join(lines) or "no versions yet")
    return 0


def _data_export(args: argparse.Namespace) -> int:
    from ftapp.data.export import export_dataset

    with _services().db() as db:
        count = export_dataset(
            db, args.name, args.out, fmt=args.format, version=args.version, split=args.split
        )
    print(f"wrote {count} examples to {args.out}")
    return 0


# --- training --------------------------------------------------------------------------


def _train(args: argparse.Namespace) -> int:
    import time

    from ftapp.errors import ValidationError
    from ftapp.store.jobs import get_job
    from ftapp.training.config import config_from_yaml, preset
    from ftapp.training.jobs import queue_job

    if args.preset:
        print(preset(args.preset, args.dataset_version).to_yaml(), end="")
        return 0
    if not args.config:
        raise ValidationError("give a config file (ftapp train --preset NAME prints one)")
    if not args.config.is_file():
        raise ValidationError(f"{args.config}: file not found")
    services = _services()
    config = config_from_yaml(args.config.read_text(encoding="utf-8"))
    with services.db() as db:
        job = queue_job(db, services.settings, config, _user())
    print(f"queued job #{job.id} {job.name}", file=sys.stderr)
    waited = 0
    while args.wait and not job.status.is_finished:
        time.sleep(2)
        waited += 2
        with services.db() as db:
            job = get_job(db, job.id)
        if waited == 30 and job.status.value == "queued":
            print("still queued after 30 s: is a worker running? (ftapp worker)", file=sys.stderr)
    _print(_job_dict(job), args.json, f"job #{job.id} {job.name}: {job.status.value}"
           + (f" ({job.error})" if job.error else ""))  # fmt: skip
    return 0 if not args.wait or job.status.value == "succeeded" else 1


def _jobs_list(args: argparse.Namespace) -> int:
    from ftapp.store.jobs import list_jobs

    with _services().db() as db:
        jobs = list_jobs(db)
    lines = [f"#{j.id}\t{j.status.value}\t{j.step}/{j.total_steps or '?'}\t{j.name}" for j in jobs]
    _print([_job_dict(j) for j in jobs], args.json, "\n".join(lines) or "no jobs yet")
    return 0


def _jobs_show(args: argparse.Namespace) -> int:
    from ftapp.store.jobs import get_job, job_metrics, list_variants

    with _services().db() as db:
        job = get_job(db, args.id)
        metrics = job_metrics(db, args.id)
        variants = list_variants(db, job_id=args.id)
    detail = {**_job_dict(job), "metrics_rows": metrics,
              "variants": [asdict(v) for v in variants]}  # fmt: skip
    text = (f"job #{job.id} {job.name}: {job.status.value}, step {job.step}/{job.total_steps}"
            + (f"\n  error: {job.error}" if job.error else "")
            + "".join(f"\n  variant {v.name}: {v.path}" for v in variants))  # fmt: skip
    _print(detail, args.json, text)
    return 0


def _jobs_cancel(args: argparse.Namespace) -> int:
    from ftapp.training.jobs import cancel_job

    with _services().db() as db:
        job = cancel_job(db, args.id)
    print(f"job #{job.id}: {job.status.value}" + (" (stopping)" if job.status.value == "running"
                                                  else ""))  # fmt: skip
    return 0


def _worker(args: argparse.Namespace) -> int:
    from ftapp.training.worker import run_worker

    run_worker(_services().settings, device=args.device, gpus=args.gpus,
               exit_with_parent=args.exit_with_parent)  # fmt: skip
    return 0


def _job_dict(job) -> dict:
    return asdict(job)


if __name__ == "__main__":
    sys.exit(main())
