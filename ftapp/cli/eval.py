"""`ftapp eval ...`: automatic evaluation from a terminal, on the same core functions as the
Evaluate tab, with the same numbers (the report's bootstrap is seeded).

ftapp eval run NAME --contestants BASELINE,OTHER[,...]
               (--version D@v1 [--split test] | --prompts FILE)
               [--metrics exact_match,rouge_l,...] [--regex R] [--check pep8]
               [--check-python FILE] [--check-command NAME=COMMAND [--check-input stdin|file]]
               [--judge-url URL --judge-model M] [--temperature 0] [--max-new-tokens 256]
               [--no-wait] [--json]
ftapp eval runs [--model NAME] [--json] | generate | cancel NAME | retry NAME
ftapp eval report NAME [--json] | example NAME POSITION [--json]
ftapp eval export NAME --out FILE [--format csv|jsonl]
ftapp eval drift [--probes N] [--json]   how far each adapter and checkpoint moved from base
ftapp eval canary add NAME (--version D@v1 [--split test] | --prompts FILE) | list [--json]
                  | remove NAME | run [--model ADAPTER]   sets that must not regress

--check-python and --check-command run an admin's code: only with FTAPP_CODE_CHECKS=1.
On a preference version, preference accuracy (preference_accuracy) is scored beside the
default metrics, for every contestant; with --metrics, name it to have it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ftapp.cli.common import (
    answer_progress_lines,
    generate_in_terminal,
    print_result,
    services,
    user,
)
from ftapp.errors import ValidationError


def add_eval_commands(commands: Any) -> None:
    evaluation = commands.add_parser("eval", help="automatic evaluation on held-out examples")
    actions = evaluation.add_subparsers(title="actions")

    run = actions.add_parser("run", help="evaluate contestants; the first is the baseline")
    run.add_argument("name")
    run.add_argument("--contestants", required=True, help="comma-separated, baseline first")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--version", help="a frozen dataset version, NAME@v1")
    source.add_argument("--prompts", type=Path, help="a file of prompts with references")
    run.add_argument("--split", default="test", help="the version's split (default test)")
    run.add_argument("--metrics", help="comma-separated (default: every text metric)")
    run.add_argument("--regex", help="the pattern of the regex metric")
    run.add_argument("--check", action="append", default=[], help="a ready check, e.g. pep8")
    run.add_argument("--check-python", action="append", default=[], type=Path,
                     help="a Python file defining check(answer, reference, prompt); "
                          "needs FTAPP_CODE_CHECKS=1")  # fmt: skip
    run.add_argument("--check-command", action="append", default=[],
                     help="NAME=COMMAND scoring an answer (stdin, or {file}); "
                          "needs FTAPP_CODE_CHECKS=1")  # fmt: skip
    run.add_argument("--check-input", default="stdin", choices=["stdin", "file"])
    run.add_argument("--judge-url", help="an OpenAI-compatible endpoint for model-as-judge")
    run.add_argument("--judge-model", help="the judge's model name at that endpoint")
    run.add_argument("--temperature", type=float, default=0.0)
    run.add_argument("--top-p", type=float, default=1.0)
    run.add_argument("--max-new-tokens", type=int, default=256)
    run.add_argument("--seed", type=int)
    run.add_argument("--workers", type=int, default=4, help="answers generated at once")
    run.add_argument("--no-wait", action="store_true",
                     help="only create the run; the web app generates and scores it")  # fmt: skip
    run.add_argument("--json", action="store_true")
    run.set_defaults(handler=_run)

    runs = actions.add_parser("runs", help="list evaluation runs")
    runs.add_argument("--model", help="only the runs this model took part in")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=_runs)
    generate = actions.add_parser("generate", help="generate and score pending runs now")
    generate.add_argument("--workers", type=int, default=4)
    generate.set_defaults(handler=_generate)
    cancel = actions.add_parser("cancel", help="stop a run that is still generating")
    cancel.add_argument("name")
    cancel.set_defaults(handler=_cancel)
    retry = actions.add_parser("retry", help="generate a run's failed answers again")
    retry.add_argument("name")
    retry.set_defaults(handler=_retry)

    drift = actions.add_parser("drift", help="how far each variant moved from the base model")
    drift.add_argument("--probes", type=int, default=0,
                       help="how many general probes (default FTAPP_DRIFT_PROBES)")  # fmt: skip
    drift.add_argument("--workers", type=int, default=4, help="answers generated at once")
    drift.add_argument("--json", action="store_true")
    drift.set_defaults(handler=_drift)

    canary = actions.add_parser("canary", help="prompt sets that must not regress")
    canary_actions = canary.add_subparsers(title="canary actions")
    add = canary_actions.add_parser("add", help="mark a version's split or a file as a canary")
    add.add_argument("name")
    where = add.add_mutually_exclusive_group(required=True)
    where.add_argument("--version", help="a frozen dataset version, NAME@v1")
    where.add_argument("--prompts", type=Path, help="a file of prompts (and references)")
    add.add_argument("--split", default="test")
    add.set_defaults(handler=_canary_add)
    listed = canary_actions.add_parser("list", help="the canary sets")
    listed.add_argument("--json", action="store_true")
    listed.set_defaults(handler=_canary_list)
    remove = canary_actions.add_parser("remove", help="stop checking a canary set")
    remove.add_argument("name")
    remove.set_defaults(handler=_canary_remove)
    run_canaries = canary_actions.add_parser(
        "run", help="evaluate adapters without a canary run on every set, here"
    )
    run_canaries.add_argument("--model", help="only this adapter")
    run_canaries.add_argument("--workers", type=int, default=4)
    run_canaries.set_defaults(handler=_canary_run)

    report = actions.add_parser("report", help="metrics with 95%% intervals, vs the baseline")
    report.add_argument("name")
    report.add_argument("--json", action="store_true")
    report.set_defaults(handler=_report)
    example = actions.add_parser("example", help="one example, every answer side by side")
    example.add_argument("name")
    example.add_argument("position", type=int)
    example.add_argument("--json", action="store_true")
    example.set_defaults(handler=_example)
    export = actions.add_parser("export", help="every answer with its scores")
    export.add_argument("name")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--format", default="csv", choices=["csv", "jsonl"])
    export.set_defaults(handler=_export)


def _run(args: argparse.Namespace) -> int:
    from ftapp.evaluation.report import build_report
    from ftapp.evaluation.runs import eval_work_list, run_progress, start_run
    from ftapp.evaluation.sizing import size_warning
    from ftapp.serving.backend import sampling_from_fields

    if bool(args.judge_url) != bool(args.judge_model):
        raise ValidationError("give both --judge-url and --judge-model, or neither")
    app = services()
    sampling = sampling_from_fields(temperature=args.temperature, top_p=args.top_p,
                                    max_new_tokens=args.max_new_tokens, seed=args.seed)  # fmt: skip
    with app.db() as db:
        run = start_run(
            db, app.served_base, app.settings, name=args.name,
            contestants=_names(args.contestants), version=args.version, split=args.split,
            prompt_file=args.prompts, sampling=sampling,
            metric_names=_names(args.metrics) if args.metrics else None, regex=args.regex,
            ready_checks=args.check, python_checks=args.check_python,
            command_checks=args.check_command, check_input=args.check_input,
            judge_url=args.judge_url, judge_model=args.judge_model, user=user(),
        )  # fmt: skip
        n_examples = run_progress(db, run.id).total // len(run.contestants)
    warning = size_warning(n_examples)
    if warning:
        print(f"note: {warning}", file=sys.stderr)
    if args.no_wait:
        print(f"created run {run.name}: {n_examples} examples from {run.source}, "
              f"{len(run.contestants)} contestants; the web app generates and scores it "
              "(or run `ftapp eval generate`)")  # fmt: skip
        return 0
    work = [eval_work_list(app.count_tokens.count_text, app.settings, app.answer_likelihood)]
    generate_in_terminal(app, work, args.workers)
    with app.db() as db:
        report = build_report(db, run.id)
    print_result(report.to_dict(), args.json, report_text(report))
    return 0


def _runs(args: argparse.Namespace) -> int:
    from ftapp.evaluation.runs import run_summaries

    with services().db() as db:
        summaries = run_summaries(db)
    if args.model:
        summaries = [s for s in summaries if any(c.model == args.model for c in s.run.contestants)]
    rows = [
        {"name": s.run.name, "status": s.run.status.value, "source": s.run.source,
         "contestants": [c.name for c in s.run.contestants], "answers": asdict(s.progress),
         "failures": s.failures, "error": s.run.error, "created_at": s.run.created_at}
        for s in summaries
    ]  # fmt: skip
    lines = []
    for r in rows:
        lines += answer_progress_lines(r)
        lines += [f"    note: {r['error']}"] if r["error"] else []
    print_result(rows, args.json, "\n".join(lines) or "no evaluation runs")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from ftapp.evaluation.runs import eval_work_list

    app = services()
    work = [eval_work_list(app.count_tokens.count_text, app.settings, app.answer_likelihood)]
    count = generate_in_terminal(app, work, args.workers)
    print(f"generated {count} answers")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from ftapp.evaluation.runs import cancel_run

    with services().db() as db:
        cancel_run(db, args.name)
    print(f"run {args.name} is cancelled")
    return 0


def _retry(args: argparse.Namespace) -> int:
    from ftapp.evaluation.runs import retry_run

    with services().db() as db:
        count = retry_run(db, args.name)
    print(f"run {args.name}: {count} failed answers will be generated again")
    return 0


def _report(args: argparse.Namespace) -> int:
    from ftapp.evaluation.report import build_report

    with services().db() as db:
        report = build_report(db, args.name)
    print_result(report.to_dict(), args.json, report_text(report))
    return 0


def _example(args: argparse.Namespace) -> int:
    from ftapp.evaluation.report import example_detail

    with services().db() as db:
        detail = example_detail(db, args.name, args.position)
    lines = [f"example {detail['position']}"]
    lines += [f"  {m['role']}: {m['content']}" for m in detail["messages"]]
    lines.append(f"  reference: {detail['reference']}")
    for answer in detail["answers"]:
        scores = ", ".join(f"{k} {_num(v, 2)}" for k, v in answer["scores"].items())
        lines.append(f"--- {answer['contestant']} ({answer['status']}) {scores}")
        lines.append(answer["answer"] or answer["error"] or "")
    print_result(detail, args.json, "\n".join(lines))
    return 0


def _export(args: argparse.Namespace) -> int:
    from ftapp.evaluation.report import write_results

    with services().db() as db:
        count = write_results(db, args.name, args.out, args.format)
    print(f"wrote {count} rows to {args.out}")
    return 0


def _drift(args: argparse.Namespace) -> int:
    """Generate the base model's probe answers (once) and measure every variant not measured
    yet, here; then every variant's drift, largest first."""
    from ftapp.evaluation.drift import drift_table, drift_work_list, ensure_probe_set

    app = services()
    probes = args.probes or app.settings.drift_probes or 240
    base = app.served_base.name
    with app.db() as db:
        if ensure_probe_set(db, base, probes) is None:
            raise ValidationError(f"no adapter or checkpoint of {base} to measure yet")
    generate_in_terminal(app, [drift_work_list(base, probes, app.answer_likelihood)],
                         args.workers)  # fmt: skip
    with app.db() as db:
        table = sorted(drift_table(db).values(), key=lambda d: -(d.value.mean or 0))
    rows = [{"variant": d.variant, "status": d.status, **asdict(d.value), "error": d.error}
            for d in table]  # fmt: skip
    lines = [f"drift from {base}: nats per token on its own answers to the probes (0: none)"]
    lines += [f"  {d.variant:<40} {_num(d.value.mean)} [{_num(d.value.low)}, "
              f"{_num(d.value.high)}] n={d.value.n}" + (f"  {d.error}" if d.error else "")
              for d in table]  # fmt: skip
    print_result(rows, args.json, "\n".join(lines))
    return 0


def _canary_add(args: argparse.Namespace) -> int:
    from ftapp.evaluation.canary import add_canary_set

    app = services()
    with app.db() as db:
        added = add_canary_set(db, app.settings, args.name, version=args.version,
                               split=args.split, prompt_file=args.prompts, user=user())  # fmt: skip
    where = added["version_label"] and f"{added['version_label']} ({added['split']} split)"
    print(f"canary set {added['name']}: {where or added['prompt_file']}; every new adapter is "
          "evaluated on it against base")  # fmt: skip
    return 0


def _canary_list(args: argparse.Namespace) -> int:
    from ftapp.evaluation.canary import list_canary_sets

    with services().db() as db:
        rows = list_canary_sets(db)
    lines = [f"{r['name']}: " + (f"{r['version_label']} ({r['split']} split)"
             if r["version_label"] else r["prompt_file"]) for r in rows]  # fmt: skip
    print_result(rows, args.json, "\n".join(lines) or "no canary set")
    return 0


def _canary_remove(args: argparse.Namespace) -> int:
    from ftapp.evaluation.canary import remove_canary_set

    with services().db() as db:
        remove_canary_set(db, args.name)
    print(f"removed canary set {args.name}")
    return 0


def _canary_run(args: argparse.Namespace) -> int:
    """What the web app does by itself, here: make the due canary runs, generate and score
    them, and say per run how the adapter did against base."""
    from ftapp.evaluation.canary import canary_results, schedule_canary_runs
    from ftapp.evaluation.runs import eval_work_list

    app = services()
    with app.db() as db:
        made = schedule_canary_runs(db, app.served_base, app.settings, model=args.model)
    work = [eval_work_list(app.count_tokens.count_text, app.settings, app.answer_likelihood)]
    generate_in_terminal(app, work, args.workers)
    with app.db() as db:
        for name, adapter in made:
            for result in canary_results(db, adapter):
                if result["run"] == name:
                    verdict = "; ".join(result["worse"]) or "no metric worse than base"
                    print(f"{name}: {result['status']}, {verdict}")
    if not made:
        print("no canary run was due")
    return 0


def report_text(report: Any) -> str:
    """The report as a plain table for a terminal."""
    run = report.run
    lines = [f"{run.name}: {run.status}, {run.source}; baseline {run.baseline.name}"]
    lines += [f"{name} against {run.baseline.name}: {text}"
              for name, text in report.verdicts().items()]  # fmt: skip
    if run.error:
        lines.append(f"note: {run.error}")
    for row in report.rows:
        value = row.value
        line = (f"  {row.metric:<20} {row.contestant:<24} {_num(value.mean)} "
                f"[{_num(value.low)}, {_num(value.high)}] n={value.n}")  # fmt: skip
        if row.vs_baseline is not None:
            diff = row.vs_baseline
            line += (
                f"  vs baseline {_num(diff.mean, sign=True)} [{_num(diff.low)}, {_num(diff.high)}]"
            )
        if row.verdict:
            line += f"  {row.verdict}"
        if row.chance:
            line += f"  {row.chance}"
        lines.append(line)
    failed = {name: n for name, n in report.failed.items() if n}
    if failed:
        lines.append("failed answers: " + ", ".join(f"{k} {v}" for k, v in failed.items()))
    return "\n".join(lines)


def _names(text: str) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _num(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
