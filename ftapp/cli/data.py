"""`ftapp data ...`: import, list, split, label, freeze and export datasets."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ftapp.cli.common import print_result as _print
from ftapp.cli.common import services as _services
from ftapp.cli.common import user as _user
from ftapp.data.export import EXPORT_FORMATS
from ftapp.records import ExampleStatus, OnError, SourceFormat


def add_data_commands(commands: Any) -> None:
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
    export.add_argument(
        "--format", default="messages", choices=EXPORT_FORMATS,
        help="preference, kto: a preference dataset's pairs or unpaired rows",
    )  # fmt: skip
    export.add_argument("--version", help="a frozen version (3 or v3); default: accepted now")
    export.add_argument("--split", choices=["train", "validation", "test"])
    export.set_defaults(handler=_data_export)


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

    ratios = args.ratios.split(",")  # checked, with the reason, by parse_ratios
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
