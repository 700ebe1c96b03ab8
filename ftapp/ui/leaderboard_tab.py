"""The Leaderboard tab (admins): for one session or all battles, a plain verdict per pair,
Bradley-Terry ratings with 95% bootstrap intervals (table and plot), the win-rate matrix, votes
per pair, the quality of the judging (position bias, per-reviewer counts, Cohen's and Fleiss'
kappa), each reviewer checked (accuracy on check battles, agreement, flags) with the ratings
without those below the session's minimum accuracy, and exports: battles and votes as CSV or
JSONL, a preference dataset the Data tab imports, and the votes as a preference dataset
version in one step, to train on."""

from __future__ import annotations

import gradio as gr

from ftapp.arena.export import write_battles, write_preferences
from ftapp.arena.leaderboard import Leaderboard, leaderboard
from ftapp.arena.preferences import (
    RULES_NOTE,
    preferences_from_votes,
    rules_text,
    votes_to_dataset,
)
from ftapp.arena.ratings import MIN_VOTES
from ftapp.arena.sessions import all_sessions, get_session
from ftapp.records import Role
from ftapp.services import Services
from ftapp.ui.common import (
    TabWiring,
    current_user,
    download_path,
    escape_markdown,
    guarded,
    require,
)

ALL = "All battles"
# Five columns, so the table fits beside its plot without scrolling sideways.
RATING_HEADERS = ["model", "rating", "95% interval", "votes", "won / lost / tied"]
PAIR_HEADERS = ["model 1", "model 2", "votes", "model 1 wins", "model 2 wins", "ties",
                "model 1 win rate"]  # fmt: skip
REVIEWER_HEADERS = ["reviewer", "votes", "A better", "B better", "tie", "both bad"]
CHECKED_HEADERS = ["reviewer", "right on checks", "agrees with the majority", "picks the left",
                   "median seconds a vote", "faster than reading", "flags"]  # fmt: skip
AGREEMENT_HEADERS = ["reviewer 1", "reviewer 2", "shared battles", "agreement", "Cohen's kappa"]


def build_leaderboard_tab(services: Services) -> TabWiring:
    with gr.Row():
        scope = gr.Dropdown([ALL], value=ALL, label="Scope", scale=4, allow_custom_value=True,
                            elem_id="ft-lb-scope")  # fmt: skip
        refresh = gr.Button("↻ Refresh", scale=1, elem_id="ft-lb-refresh")
    summary = gr.Markdown("", elem_id="ft-lb-summary")
    verdicts = gr.Markdown("", elem_id="ft-lb-verdicts")
    # The table across the page (beside the plot it had to scroll sideways), the plot below.
    ratings = gr.Dataframe(headers=RATING_HEADERS, interactive=False, label="Ratings",
                           elem_id="ft-lb-ratings")  # fmt: skip
    plot = gr.Plot(label="Ratings with 95% intervals")
    gr.Markdown("### Controlling for length and formatting")
    style_text = gr.Markdown("", elem_id="ft-lb-style")
    style_ratings = gr.Dataframe(headers=RATING_HEADERS, interactive=False,
                                 label="Style-controlled ratings",
                                 elem_id="ft-lb-style-ratings")  # fmt: skip
    matrix = gr.Dataframe(interactive=False, label="Win rate of row against column")
    pairs = gr.Dataframe(headers=PAIR_HEADERS, interactive=False, label="Votes per pair")
    gr.Markdown("### Quality of the judging")
    quality = gr.Markdown("", elem_id="ft-lb-quality")
    with gr.Row():
        reviewers = gr.Dataframe(headers=REVIEWER_HEADERS, interactive=False, label="Reviewers")
        agreement = gr.Dataframe(headers=AGREEMENT_HEADERS, interactive=False,
                                 label="Agreement on shared battles")  # fmt: skip
    gr.Markdown(
        "### Reviewers checked\n"
        "Check battles (marked in Manage) reach every reviewer unannounced and count "
        "for accuracy only. Each share is k of n with its exact 95% interval."
    )
    checked = gr.Dataframe(
        headers=CHECKED_HEADERS,
        interactive=False,
        wrap=True,
        label="Each reviewer's judging",
        elem_id="ft-lb-checked",
    )
    trusted_text = gr.Markdown("", elem_id="ft-lb-trusted")
    trusted_ratings = gr.Dataframe(headers=RATING_HEADERS, interactive=False, visible=False,
                                   label="Ratings without the reviewers below the minimum",
                                   elem_id="ft-lb-trusted-ratings")  # fmt: skip
    gr.Markdown("### Export")
    with gr.Row():
        csv_button = gr.Button("Battles and votes (CSV)")
        jsonl_button = gr.Button("Battles and votes (JSONL)")
        preference_button = gr.Button("Preference dataset (JSONL, for the Data tab)",
                                      elem_id="ft-lb-export-preferences")  # fmt: skip
    exported = gr.File(label="Download", elem_id="ft-lb-file")
    build_votes_to_dataset_section(services, scope)

    @guarded(services, Role.ADMIN)
    def show(request: gr.Request, chosen: str | None):
        session = None if chosen in (None, "", ALL) else chosen
        with services.db() as db:
            names = [s.name for s in all_sessions(db)]
            board = leaderboard(db, session, count_tokens=services.count_tokens.count_text)
        return (gr.update(choices=[ALL, *names], value=chosen or ALL), *_render(board))

    def exporter(fmt: str):
        @guarded(services, Role.ADMIN)
        def export(request: gr.Request, chosen: str | None) -> str:
            session = None if chosen in (None, "", ALL) else chosen
            suffix = "preferences.jsonl" if fmt == "preference" else f"battles.{fmt}"
            name = f"arena-{session or 'all'}-{suffix}".replace(" ", "_")
            out = download_path(current_user(services, request), name)
            with services.db() as db:
                if fmt == "preference":
                    write_preferences(db, out, session)
                else:
                    write_battles(db, out, fmt, session)
            return str(out)

        export.__name__ = f"export_{fmt}"
        return export

    outputs = [scope, summary, verdicts, ratings, plot, style_text, style_ratings, matrix, pairs,
               quality, reviewers, agreement, checked, trusted_text, trusted_ratings]  # fmt: skip
    refresh.click(show, [scope], outputs, api_name="leaderboard")
    scope.change(show, [scope], outputs, api_name=False)
    csv_button.click(exporter("csv"), [scope], [exported], api_name="export_battles_csv")
    jsonl_button.click(exporter("jsonl"), [scope], [exported], api_name="export_battles_jsonl")
    preference_button.click(exporter("preference"), [scope], [exported],
                            api_name="export_preferences")  # fmt: skip
    return TabWiring(on_load=((show, [scope], outputs),))


def build_votes_to_dataset_section(services: Services, scope: gr.Dropdown) -> None:
    """The votes of the scope as a new preference dataset version, counted first."""
    gr.Markdown(f"### Train on the votes\n{RULES_NOTE} Each row links back to its battle.")
    with gr.Row():
        name = gr.Textbox(label="New dataset name", scale=3, elem_id="ft-lb-votes-name")
        count = gr.Button("Count battles per rule", scale=1, elem_id="ft-lb-votes-count")
        create = gr.Button("Create preference version", variant="primary", scale=1,
                           elem_id="ft-lb-votes-create")  # fmt: skip
    result = gr.Markdown("", elem_id="ft-lb-votes-result")

    @guarded(services, Role.ADMIN)
    def count_rules(request: gr.Request, chosen: str | None) -> str:
        session = None if chosen in (None, "", ALL) else chosen
        with services.db() as db:
            session_id = get_session(db, session).id if session else None
            found = preferences_from_votes(db, session_id)
        return (f"{escape_markdown(rules_text(found.counts))}: {len(found.pairs)} pairs and "
                f"{len(found.labelled)} answers labelled bad would be written.")  # fmt: skip

    @guarded(services, Role.ADMIN)
    def to_dataset(request: gr.Request, chosen: str | None, dataset: str) -> str:
        session = None if chosen in (None, "", ALL) else chosen
        with services.db() as db:
            version, found = votes_to_dataset(
                db, require(dataset, "Name the new dataset first."), session=session,
                user=current_user(services, request).name, count_tokens=services.count_tokens,
                max_tokens=services.settings.max_tokens,
            )  # fmt: skip
        return (f"Froze **{escape_markdown(version.label)}**: {len(found.pairs)} pairs, "
                f"{len(found.labelled)} answers labelled bad ({version.n_train} train, "
                f"{version.n_validation} validation, {version.n_test} test). Train it from "
                "the Train tab.")  # fmt: skip

    count.click(count_rules, [scope], [result], api_name="count_vote_rules")
    create.click(to_dataset, [scope, name], [result], api_name="votes_to_dataset")


def _render(board: Leaderboard) -> tuple:
    summary = (f"**{escape_markdown(board.scope)}**: {board.n_votes} votes on "
               f"{board.n_battles_voted} battles.")  # fmt: skip
    verdicts = "\n".join(f"- {escape_markdown(v.text)}" for v in board.verdicts) or "No votes yet."
    ratings = [_rating_row(r) for r in board.ratings]
    style_text, style_rows = _style(board)
    matrix = [[model, *[_percent(cell) for cell in row]]
              for model, row in zip(board.matrix_models, board.matrix, strict=True)]  # fmt: skip
    pairs = [[p.model_1, p.model_2, p.n, p.wins_1, p.wins_2, p.ties, _percent(p.win_rate_1)]
             for p in board.pairs]  # fmt: skip
    fleiss = "n/a" if board.fleiss_kappa is None else f"{board.fleiss_kappa:.2f}"
    quality = (
        f"- Position: {escape_markdown(board.position_bias.text)}\n"
        f"- Fleiss' kappa over battles judged by two or more reviewers: {fleiss}"
    )
    reviewers = [[r.reviewer, r.n_votes, r.a, r.b, r.tie, r.both_bad] for r in board.reviewers]
    agreement = [[p.reviewer_1, p.reviewer_2, p.n_shared, _percent(p.percent_agreement),
                  "n/a" if p.kappa is None else round(p.kappa, 2)]
                 for p in board.reviewer_pairs]  # fmt: skip
    matrix_update = gr.update(value=matrix, headers=["", *board.matrix_models]) if matrix else []
    checked = [[q.reviewer, _share(q.accuracy), _share(q.agreement), _share(q.left),
                "" if q.median_seconds is None else round(q.median_seconds, 1),
                _share(q.too_fast), "; ".join(q.flags)] for q in board.quality]  # fmt: skip
    trusted_text, trusted_rows = _trusted(board)
    return (summary, verdicts, ratings, _plot(board), style_text, style_rows, matrix_update,
            pairs, quality, reviewers, agreement, checked, trusted_text,
            gr.update(value=trusted_rows, visible=board.trusted_ratings is not None))  # fmt: skip


def _trusted(board: Leaderboard) -> tuple[str, list[list]]:
    """The session's ratings without the reviewers below its minimum accuracy, if it sets one:
    both ways, so the admin sees what dropping them changes."""
    if board.min_accuracy is None:
        return ("No minimum accuracy on checks is set for this scope (a session sets one in "
                "Manage), so every reviewer's votes count."), []  # fmt: skip
    if not board.dropped:
        text = (f"Every reviewer is at or above {board.min_accuracy:.0%} on checks: the "
                "ratings above count every vote.")  # fmt: skip
    else:
        names = ", ".join(escape_markdown(n) for n in board.dropped)
        text = (f"Below {board.min_accuracy:.0%} on checks: **{names}**. The ratings without "
                "their votes:")  # fmt: skip
    return text, [_rating_row(r) for r in board.trusted_ratings or []]


def _share(share) -> str:
    if not share.n:
        return ""
    return f"{share.k} of {share.n} ({share.rate:.0%}, {share.low:.0%} to {share.high:.0%})"


def _rating_row(r) -> list:
    return [r.model, round(r.rating), _interval(r), r.n_votes,
            f"{r.wins:g} / {r.losses:g} / {r.ties:g}"]  # fmt: skip


def _style(board: Leaderboard) -> tuple[str, list[list]]:
    """What the style control says, in words, and its ratings."""
    if board.style is None:
        return ("Not enough variety in the answers' length and formatting yet to control for "
                "it."), []  # fmt: skip
    lines = [f"- {escape_markdown(e.text)}" for e in board.style.effects]
    lines += [f"- **{escape_markdown(note)}**" for note in board.style.notes]
    if not board.style.notes:
        lines.append("- The order of the models is the same once style is controlled for.")
    return "\n".join(lines), [_rating_row(r) for r in board.style.ratings]


def _plot(board: Leaderboard):
    """Ratings as points with their 95% intervals as error bars, best at the top."""
    from matplotlib.figure import Figure

    rows = [r for r in reversed(board.ratings)]
    figure = Figure(figsize=(6, 0.6 * len(rows) + 1.2), layout="constrained")
    axes = figure.subplots()
    if not rows:
        axes.text(0.5, 0.5, "No votes yet", ha="center", va="center")
        axes.set_axis_off()
        return figure
    centre = [r.rating for r in rows]
    # max(0, ...): an interval from identical resamples can miss its point by rounding. A
    # model with too few votes gets no bar: its interval would stretch the axis and say nothing.
    low = [max(0.0, r.rating - r.lower) if _has_interval(r) else 0.0 for r in rows]
    high = [max(0.0, r.upper - r.rating) if _has_interval(r) else 0.0 for r in rows]
    axes.errorbar(centre, range(len(rows)), xerr=[low, high], fmt="o", capsize=4)
    names = [r.model if _has_interval(r) else f"{r.model} (too few votes)" for r in rows]
    axes.set_yticks(range(len(rows)), names)
    axes.set_xlabel("Bradley-Terry rating (base = 1000)")
    # The page floats the plot's label over the image's top-left corner, where the best
    # model's name was: a title row, and half a row of room around each model, keep the
    # names below it.
    axes.set_ylim(-0.5, len(rows) - 0.5)
    axes.set_title("Best at the top; the bars are 95% intervals", fontsize=9)
    axes.grid(axis="x", alpha=0.3)
    return figure


def _has_interval(rating) -> bool:
    return rating.n_votes >= MIN_VOTES and None not in (rating.lower, rating.upper)


def _interval(rating) -> str:
    """A rating's 95% interval, or why there is none worth showing: with a handful of votes
    the bootstrap gives intervals like [-74, 2000] that say nothing."""
    if rating.n_votes < MIN_VOTES:
        return f"not enough votes ({rating.n_votes} of {MIN_VOTES})"
    if rating.lower is None or rating.upper is None:
        return "n/a"
    return f"{rating.lower:,.0f} to {rating.upper:,.0f}"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"
