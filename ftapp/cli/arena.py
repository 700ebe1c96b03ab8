"""`ftapp arena ...`: the Arena from a terminal, on the same core functions as the web app.

ftapp arena contestants | add-prompt NAME --system TEXT [--model M] | pool NAME NAME...
ftapp arena create-session NAME --contestants A,B[,C] (--version D@v1 | --prompts FILE)
                           [--overlap N] [--reviewers R1,R2] [--instructions TEXT] ...
ftapp arena sessions [--json] | generate | open NAME [--anyway] | close NAME
ftapp arena leaderboard [--session NAME] [--json]
ftapp arena check mark BATTLE --better a|b | add SESSION --prompt P --better-answer T
                  --worse-answer T | min-accuracy SESSION VALUE (80%, 0.8, or "" for none)
ftapp arena export --out FILE [--format csv|jsonl|preference] [--session NAME]
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


def add_arena_commands(commands: Any) -> None:
    arena = commands.add_parser("arena", help="blind battles, sessions, leaderboard")
    actions = arena.add_subparsers(title="actions")

    listing = actions.add_parser("contestants", help="what can take part in battles")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_contestants)
    add = actions.add_parser("add-prompt", help="add a prompt-engineered contestant")
    add.add_argument("name")
    add.add_argument("--system", required=True, help="its system prompt")
    add.add_argument("--model", default="base", help="the model it runs on (default base)")
    add.set_defaults(handler=_add_prompt)
    pool = actions.add_parser("pool", help="set the contestants free battles draw from")
    pool.add_argument("names", nargs="+")
    pool.set_defaults(handler=_pool)

    create = actions.add_parser("create-session", help="create an evaluation session")
    create.add_argument("name")
    create.add_argument("--contestants", required=True, help="comma-separated, two or more")
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument("--version", help="a frozen dataset version, NAME@v1")
    source.add_argument("--prompts", type=Path, help="a prompt file (JSONL, JSON, CSV, Parquet)")
    create.add_argument("--split", default="test", help="the version's split (default test)")
    create.add_argument("--overlap", type=int, default=1, help="reviewers per battle")
    create.add_argument("--reviewers", default="", help="comma-separated; empty: everyone")
    create.add_argument("--instructions", default="")
    create.add_argument("--temperature", type=float, default=0.7)
    create.add_argument("--top-p", type=float, default=0.95)
    create.add_argument("--max-new-tokens", type=int, default=256)
    create.add_argument("--seed", type=int)
    create.set_defaults(handler=_create_session)

    sessions = actions.add_parser("sessions", help="list evaluation sessions")
    sessions.add_argument("--json", action="store_true")
    sessions.set_defaults(handler=_sessions)
    generate = actions.add_parser(
        "generate", help="generate pending session answers now (the web app does it by itself)"
    )
    generate.add_argument("--workers", type=int, default=4)
    generate.set_defaults(handler=_generate)
    opening = actions.add_parser("open", help="open a session whose answers are generated")
    opening.add_argument("name")
    opening.add_argument("--anyway", action="store_true", help="leave out failed answers")
    opening.set_defaults(handler=_open)
    close = actions.add_parser("close", help="close a session: no more votes")
    close.add_argument("name")
    close.set_defaults(handler=_close)

    board = actions.add_parser("leaderboard", help="ratings, verdicts, agreement")
    board.add_argument("--session", help="one session (default: every vote)")
    board.add_argument("--json", action="store_true")
    board.set_defaults(handler=_leaderboard)
    check = actions.add_parser("check", help="battles whose better side is known")
    checks = check.add_subparsers(title="what to do")
    mark = checks.add_parser("mark", help="make a session battle a check")
    mark.add_argument("battle", help="the battle's number")
    mark.add_argument("--better", required=True, help="the better side: a or b")
    mark.set_defaults(handler=_check_mark)
    known = checks.add_parser("add", help="a check from a prompt and two known answers")
    known.add_argument("session")
    known.add_argument("--prompt", required=True)
    known.add_argument("--better-answer", required=True)
    known.add_argument("--worse-answer", required=True)
    known.set_defaults(handler=_check_add)
    minimum = checks.add_parser(
        "min-accuracy", help="show the ratings without reviewers below this accuracy on checks"
    )
    minimum.add_argument("session")
    minimum.add_argument("value", help='a share (0.8) or a percentage (80%%); "" for none')
    minimum.set_defaults(handler=_check_min_accuracy)
    export = actions.add_parser("export", help="battles and votes, or a preference dataset")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--format", default="csv", choices=["csv", "jsonl", "preference"])
    export.add_argument("--session", help="one session (default: every battle)")
    export.set_defaults(handler=_export)
    to_dataset = actions.add_parser(
        "to-dataset", help="the decided votes as a new preference dataset version, in one step"
    )
    to_dataset.add_argument("name", help="the new dataset's name")
    to_dataset.add_argument("--session", help="one session (default: every battle)")
    to_dataset.add_argument("--ratios", default="0.8,0.1,0.1", help="train,validation,test")
    to_dataset.add_argument("--seed", type=int, default=0)
    to_dataset.add_argument("--dry-run", action="store_true",
                            help="only count the battles per rule; write nothing")  # fmt: skip
    to_dataset.add_argument("--json", action="store_true")
    to_dataset.set_defaults(handler=_to_dataset)


def _contestants(args: argparse.Namespace) -> int:
    from ftapp.arena.contestants import all_contestants
    from ftapp.store.arena import pool

    app = services()
    with app.db() as db:
        found = all_contestants(db, app.served_base)
        enabled = set(pool(db))
    rows = [{**asdict(c), "in_pool": c.name in enabled} for c in found]
    lines = [f"{r['name']:<32} {'pool' if r['in_pool'] else '    '}  {r['model']}"
             + (f"  system: {r['system_prompt'][:60]!r}" if r["system_prompt"] else "")
             for r in rows]  # fmt: skip
    print_result(rows, args.json, "\n".join(lines))
    return 0


def _add_prompt(args: argparse.Namespace) -> int:
    from ftapp.arena.contestants import add_prompt_variant

    app = services()
    with app.db() as db:
        add_prompt_variant(db, app.served_base, args.name, args.system, model=args.model,
                           user=user())  # fmt: skip
    print(f"added prompt variant {args.name} ({args.model} with a system prompt)")
    return 0


def _pool(args: argparse.Namespace) -> int:
    from ftapp.arena.contestants import set_pool

    app = services()
    with app.db() as db:
        set_pool(db, app.served_base, args.names, user())
    print(f"free battles draw from: {', '.join(args.names)}")
    return 0


def _create_session(args: argparse.Namespace) -> int:
    from ftapp.arena.sessions import generation_progress, size_warning, start_session
    from ftapp.serving.backend import sampling_from_fields

    app = services()
    sampling = sampling_from_fields(temperature=args.temperature, top_p=args.top_p,
                                    max_new_tokens=args.max_new_tokens, seed=args.seed)  # fmt: skip
    with app.db() as db:
        session = start_session(
            db, app.served_base, name=args.name, contestants=_names(args.contestants),
            version=args.version, split=args.split, prompt_file=args.prompts,
            sampling=sampling, overlap=args.overlap, instructions=args.instructions,
            reviewers=args.reviewers, user=user(),
        )  # fmt: skip
        n_prompts = generation_progress(db, session.id).total // len(session.contestants)
    print(f"created session {session.name}: {n_prompts} prompts from {session.source}, "
          f"{len(session.contestants)} contestants; answers are generated by the web app "
          "(or run `ftapp arena generate`)")  # fmt: skip
    warning = size_warning(n_prompts, session.overlap)
    if warning:
        print(f"note: {warning}", file=sys.stderr)
    return 0


def _sessions(args: argparse.Namespace) -> int:
    from ftapp.arena.sessions import session_summaries

    with services().db() as db:
        rows = [
            {"name": s.session.name, "status": s.session.status.value,
             "source": s.session.source, "contestants": [c.name for c in s.session.contestants],
             "overlap": s.session.overlap, "answers": asdict(s.answers),
             "battles": s.n_battles, "votes": s.n_votes, "failures": s.failures,
             "created_at": s.session.created_at}
            for s in session_summaries(db)
        ]  # fmt: skip
    lines = []
    for r in rows:
        lines += answer_progress_lines(r, f"{r['votes']} votes  ")
    print_result(rows, args.json, "\n".join(lines) or "no sessions")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from ftapp.arena.generation import SESSION_ANSWERS

    count = generate_in_terminal(services(), [SESSION_ANSWERS], args.workers)
    print(f"generated {count} answers")
    return 0


def _open(args: argparse.Namespace) -> int:
    from ftapp.arena.sessions import get_session, open_if_generated

    with services().db() as db:
        session = get_session(db, args.name)
        is_open = open_if_generated(db, session.id, even_with_failures=args.anyway)
    print(f"session {args.name} is " + ("open" if is_open else "still waiting for answers"))
    return 0 if is_open else 1


def _close(args: argparse.Namespace) -> int:
    from ftapp.arena.sessions import close_session, get_session

    with services().db() as db:
        close_session(db, get_session(db, args.name).id)
    print(f"session {args.name} is closed")
    return 0


def _leaderboard(args: argparse.Namespace) -> int:
    from ftapp.arena.leaderboard import leaderboard

    app = services()
    with app.db() as db:
        board = leaderboard(db, args.session, count_tokens=app.count_tokens.count_text)
    lines = [f"{board.scope}: {board.n_votes} votes"]
    lines += [f"  {r.model:<32} {r.rating:7.1f}  [{_num(r.lower)}, {_num(r.upper)}]  "
              f"{r.n_votes} votes" for r in board.ratings]  # fmt: skip
    lines += [f"  {v.text}" for v in board.verdicts]
    if board.style is not None:
        lines.append("  controlling for length and formatting:")
        lines += [f"    {r.model:<30} {r.rating:7.1f}  [{_num(r.lower)}, {_num(r.upper)}]"
                  for r in board.style.ratings]  # fmt: skip
        lines += [f"    {e.text}" for e in board.style.effects]
        lines += [f"    {note}" for note in board.style.notes]
    lines.append(f"  position bias: {board.position_bias.text}")
    lines.append(f"  Fleiss' kappa: {_num(board.fleiss_kappa, 2)}")
    for q in board.quality:
        lines.append(f"  reviewer {q.reviewer}: {q.n_votes} votes, right on "
                     f"{q.accuracy.k} of {q.accuracy.n} checks, agrees with the majority on "
                     f"{q.agreement.k} of {q.agreement.n}, median {_num(q.median_seconds)} s"
                     + "".join(f"\n    flag: {flag}" for flag in q.flags))  # fmt: skip
    if board.trusted_ratings is not None:
        lines.append(f"  without reviewers below {board.min_accuracy:.0%} on checks "
                     f"({', '.join(board.dropped) or 'none'}):")  # fmt: skip
        lines += [f"    {r.model:<30} {r.rating:7.1f}  [{_num(r.lower)}, {_num(r.upper)}]"
                  for r in board.trusted_ratings]  # fmt: skip
    print_result(board.to_dict(), args.json, "\n".join(lines))
    return 0


def _check_mark(args: argparse.Namespace) -> int:
    from ftapp.arena.gold import battle_from_label, mark_check

    with services().db() as db:
        battle = mark_check(db, battle_from_label(db, args.battle).id, args.better)
    print(f"battle #{battle.id} is a check: {battle.gold_choice} is the better side")
    return 0


def _check_add(args: argparse.Namespace) -> int:
    from ftapp.arena.gold import add_check

    with services().db() as db:
        battle = add_check(db, args.session, args.prompt, args.better_answer,
                           args.worse_answer, user())  # fmt: skip
    print(f"added check battle #{battle.id} to {args.session}")
    return 0


def _check_min_accuracy(args: argparse.Namespace) -> int:
    from ftapp.arena.gold import parse_accuracy, set_min_accuracy

    value = parse_accuracy(args.value)
    with services().db() as db:
        set_min_accuracy(db, args.session, value)
    shown = "none: every vote counts" if value is None else f"{value:.0%}"
    print(f"{args.session}: minimum accuracy on checks {shown}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ftapp.arena.export import write_battles, write_preferences

    with services().db() as db:
        if args.format == "preference":
            count = write_preferences(db, args.out, args.session)
            what = "preference pairs"
        else:
            count = write_battles(db, args.out, args.format, args.session)
            what = "rows"
    print(f"wrote {count} {what} to {args.out}")
    return 0


def _to_dataset(args: argparse.Namespace) -> int:
    from ftapp.arena.preferences import preferences_from_votes, rules_text, votes_to_dataset
    from ftapp.store.arena import get_session

    app = services()
    with app.db() as db:
        if args.dry_run:
            session_id = get_session(db, args.session).id if args.session else None
            found = preferences_from_votes(db, session_id)
            print_result(found.counts, args.json, rules_text(found.counts))
            return 0
        version, found = votes_to_dataset(
            db, args.name, session=args.session, user=user(), count_tokens=app.count_tokens,
            max_tokens=app.settings.max_tokens, ratios=args.ratios.split(","),
            seed=args.seed,
        )  # fmt: skip
    text = (f"{rules_text(found.counts)}\nfroze {version.label}: {len(found.pairs)} pairs, "
            f"{len(found.labelled)} answers labelled bad")  # fmt: skip
    result = {"version": version.label, "pairs": len(found.pairs),
              "labelled": len(found.labelled), "counts": found.counts}  # fmt: skip
    print_result(result, args.json, text)
    return 0


def _names(text: str) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
