"""`ftapp deploy ...`: production from a terminal, on the same core functions as the Deploy tab.

ftapp deploy promote NAME [--note TEXT] [--override REASON]
                                          make NAME ("base" or a model variant) production;
                                          REASON is needed when the gate objects (drift over
                                          FTAPP_MAX_DRIFT, a canary set that regressed)
ftapp deploy rollback                     back to the model in production before this one
ftapp deploy status [--json]              what is in production, the history, the URL
ftapp deploy monitor [--bucket hour|day] [--since WHEN] [--by-key] [--json]
ftapp deploy canary start NAME [--share 10%] | status [--json] | promote [--override WHY]
                    | rollback [--why TEXT]   a candidate on a share of production traffic
ftapp deploy feedback-to-dataset NAME [--model M] [--since WHEN] [--dry-run] [--json]
                                          thumbs up/down on production replies as a new
                                          preference (KTO) dataset version

A promotion is in the database at once, so the web app answers with it at its next production
request. With FTAPP_VLLM_URL (a vLLM deployment of your own) this command also registers the
adapter there as "production"; the vLLM server the web app starts itself is reachable only
from the app, which registers it when it next serves production or opens the Deploy tab.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from ftapp.cli.common import print_result, services, user


def add_deploy_commands(commands: Any) -> None:
    deploy = commands.add_parser("deploy", help="promote to production, roll back, monitor")
    actions = deploy.add_subparsers(title="actions")

    promote = actions.add_parser("promote", help='make a model answer as "production"')
    promote.add_argument("name", help='"base" or a model variant')
    promote.add_argument("--note", default="", help="why, for the history")
    promote.add_argument("--override", default="",
                         help="why to promote although the gate objects (recorded)")  # fmt: skip
    promote.set_defaults(handler=_promote)
    rollback = actions.add_parser("rollback", help="back to the previous production model")
    rollback.set_defaults(handler=_rollback)
    status = actions.add_parser("status", help="what is in production, the history, the URL")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)
    canary = actions.add_parser("canary", help="a candidate on a share of production")
    steps = canary.add_subparsers(title="canary actions")
    begin = steps.add_parser("start", help="the candidate answers --share of production")
    begin.add_argument("name")
    begin.add_argument("--share", default="10%", help="of the traffic (default 10%%)")
    begin.set_defaults(handler=_canary_start)
    shown = steps.add_parser("status", help="the running canary beside the stable model")
    shown.add_argument("--json", action="store_true")
    shown.set_defaults(handler=_canary_status)
    full = steps.add_parser("promote", help="the candidate becomes production for everyone")
    full.add_argument("--override", default="", help="why, when the promotion gate objects")
    full.set_defaults(handler=_canary_promote)
    back = steps.add_parser("rollback", help="the stable model answers everyone again")
    back.add_argument("--why", default="")
    back.set_defaults(handler=_canary_rollback)
    monitor = actions.add_parser("monitor", help="requests, latency and feedback over time")
    monitor.add_argument("--bucket", default="hour", choices=["hour", "day"])
    monitor.add_argument("--since", help="from this ISO-8601 date or time on (UTC)")
    monitor.add_argument("--by-key", action="store_true", help="a row per API key too")
    monitor.add_argument("--json", action="store_true")
    monitor.set_defaults(handler=_monitor)
    feedback = actions.add_parser(
        "feedback-to-dataset",
        help="thumbs up/down on production replies as a new preference (KTO) dataset version",
    )
    feedback.add_argument("name", help="the new dataset's name")
    feedback.add_argument("--model", help="only the replies of this promoted model")
    feedback.add_argument("--since", help="from this ISO-8601 date or time on (UTC)")
    feedback.add_argument("--ratios", default="0.8,0.1,0.1", help="train,validation,test")
    feedback.add_argument("--seed", type=int, default=0)
    feedback.add_argument("--dry-run", action="store_true",
                          help="only count the requests per rule; write nothing")  # fmt: skip
    feedback.add_argument("--json", action="store_true")
    feedback.set_defaults(handler=_feedback_to_dataset)


def _promote(args: argparse.Namespace) -> int:
    from ftapp.deploy.production import promote_to_production

    app = services()
    promotion, served = promote_to_production(
        app.db, _engine(app), app.served_base, args.name, user(), args.note,
        override_reason=args.override, max_drift=app.settings.max_drift,
    )  # fmt: skip
    print(f"{promotion.model} is in production (promotion #{promotion.id}); {served}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from ftapp.deploy.production import roll_back_production

    app = services()
    promotion, served = roll_back_production(app.db, _engine(app), app.served_base, user())
    print(f"rolled back: {promotion.model} is in production again; {served}")
    return 0


def _engine(app: Any) -> Any:
    """The engine to tell of a promotion: only a deployment given by URL. Any other backend
    here would start a vLLM server (or load a model) in this short-lived process."""
    return app.backend if app.settings.vllm_url else None


def _status(args: argparse.Namespace) -> int:
    from ftapp.deploy.production import current_production, production_endpoint, promotion_history

    app = services()
    with app.db() as db:
        current = current_production(db)
        history = promotion_history(db)
    backend, url = _backend_and_url(app.settings)
    endpoint = production_endpoint(backend, url, current, own_server=not app.settings.vllm_url)
    value = {
        "current": asdict(current) if current else None,
        "history": [asdict(p) for p in history],
        "endpoint": asdict(endpoint),
    }
    lines = [
        f"production: {current.model} (since {current.created_at}, by {current.created_by})"
        if current
        else "production: nothing promoted yet",
        f"URL: {endpoint.url or 'none'}  model: {endpoint.model}",
        endpoint.note,
        "history (newest first):",
    ]
    lines += [f"  #{p.id} {p.created_at} {'rollback ' if p.is_rollback else 'promote  '}"
              f"{p.model:<24} {p.created_by}  {p.note}" for p in history]  # fmt: skip
    print_result(value, args.json, "\n".join(line for line in lines if line))
    return 0


def _monitor(args: argparse.Namespace) -> int:
    from ftapp.deploy.monitoring import feedback_drop, monitoring_report
    from ftapp.deploy.traffic_drift import drift_text, production_drift

    with services().db() as db:
        rows = monitoring_report(db, args.bucket, args.since, by_key=args.by_key)
        drop = feedback_drop(db)
        shifts = production_drift(db)
    value = {"rows": [asdict(r) for r in rows], "drop": asdict(drop) if drop else None,
             "traffic_drift": [asdict(s) for s in shifts]}  # fmt: skip
    lines = [f"{'bucket':<17} {'model':<24} {'requests':>8} {'errors':>6} {'p50 ms':>8} "
             f"{'p95 ms':>8} {'rated':>6} {'thumbs up':>9}"]  # fmt: skip
    lines += [f"{r.bucket:<17} {r.model:<24} {r.requests:>8} {r.errors:>6} "
              f"{_num(r.latency_p50_ms):>8} {_num(r.latency_p95_ms):>8} {r.rated:>6} "
              f"{_percent(r.thumbs_up_rate):>9}" + (f"  {r.source}" if r.source else "")
              for r in rows]  # fmt: skip
    lines.append(f"DROP: {drop.text}" if drop else "no drop against the previous model")
    lines.append(drift_text(shifts))
    print_result(value, args.json, "\n".join(lines))
    return 0


def _canary_start(args: argparse.Namespace) -> int:
    from ftapp.deploy.canary_release import start_canary

    app = services()
    with app.db() as db:
        canary = start_canary(db, app.served_base, args.name, args.share, user())
    print(f"canary #{canary.id}: {canary.candidate} answers {canary.share:.0%} of production "
          f"beside {canary.stable}")  # fmt: skip
    return 0


def _canary_status(args: argparse.Namespace) -> int:
    from ftapp.deploy.canary_release import compare
    from ftapp.store.production import active_canary, list_canaries

    app = services()
    with app.db() as db:
        running = active_canary(db)
        seen = compare(db, running, app.settings.canary_min_requests) if running else None
        past = list_canaries(db)
    lines = ["no canary is running"] if seen is None else [
        f"canary #{running.id}: {running.candidate} on {running.share:.0%} beside {running.stable}",
        *(f"  {side.model:<24} {side.requests:>6} requests {side.errors:>4} errors "
          f"{side.rated:>4} rated" for side in (seen.candidate, seen.stable)),
    ]  # fmt: skip
    lines += [f"#{c.id} {c.candidate} ({c.share:.0%}): {c.outcome or 'running'}"
              + (f" by {c.ended_by}: {c.reason}" if c.reason else "") for c in past]  # fmt: skip
    value = {"running": asdict(seen) if seen else None, "history": [asdict(c) for c in past]}
    print_result(value, args.json, "\n".join(lines))
    return 0


def _canary_promote(args: argparse.Namespace) -> int:
    from ftapp.deploy.canary_release import promote_canary

    app = services()
    with app.db() as db:
        canary = promote_canary(db, app.served_base, user(), override_reason=args.override)
    print(f"{canary.candidate} is in production for everyone")
    return 0


def _canary_rollback(args: argparse.Namespace) -> int:
    from ftapp.deploy.canary_release import roll_back_canary

    with services().db() as db:
        canary = roll_back_canary(db, user(), args.why)
    print(f"canary {canary.candidate} rolled back: {canary.stable} answers everyone")
    return 0


def _feedback_to_dataset(args: argparse.Namespace) -> int:
    from ftapp.deploy.feedback import counts_text, feedback_counts, feedback_to_dataset

    app = services()
    with app.db() as db:
        if args.dry_run:
            counts = feedback_counts(db, since=args.since, model=args.model)
            print_result(counts, args.json, counts_text(counts))
            return 0
        version, found = feedback_to_dataset(
            db, args.name, since=args.since, model=args.model, user=user(),
            count_tokens=app.count_tokens, max_tokens=app.settings.max_tokens,
            ratios=args.ratios.split(","), seed=args.seed,
        )  # fmt: skip
    good = sum(1 for r in found.replies if r.is_good)
    bad = len(found.replies) - good
    text = (f"{counts_text(found.counts)}\nfroze {version.label}: {version.n_examples} rows "
            f"({good} replies labelled good, {bad} bad)")  # fmt: skip
    result = {"version": version.label, "rows": version.n_examples, "good": good, "bad": bad,
              "counts": found.counts}  # fmt: skip
    print_result(result, args.json, text)
    return 0


def _backend_and_url(settings: Any) -> tuple[str, str | None]:
    """The backend the web app runs and its vLLM URL, without starting anything."""
    from ftapp.serving.vllm_server import vllm_importable

    if settings.vllm_url:
        return "vllm", settings.vllm_url
    if settings.backend in ("hf", "echo"):
        return settings.backend, None
    if settings.backend == "vllm" or vllm_importable()[0]:
        port = settings.vllm_port
        return "vllm", f"http://127.0.0.1:{port}" if port else None
    return "hf", None


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"
