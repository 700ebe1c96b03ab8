"""Arena tab, Manage section: checks for the chosen session (admins). Mark a battle whose
better side is known, add one from a prompt with a better and a worse answer, and set the
accuracy on checks below which the Leaderboard also shows the ratings without a reviewer.
The logic is arena/gold.py's; the Leaderboard shows what the checks found."""

from __future__ import annotations

import gradio as gr

from ftapp.arena.gold import (
    add_check,
    battle_from_label,
    check_candidates,
    mark_check,
    parse_accuracy,
    set_min_accuracy,
)
from ftapp.arena.sessions import get_session
from ftapp.records import Battle, Role
from ftapp.services import Services
from ftapp.text import one_line
from ftapp.ui.common import current_user, escape_markdown, guarded, require


def build_checks(services: Services, chosen: gr.Dropdown, report: gr.Markdown) -> list:
    """The checks form under the sessions table; returns its events (the Manage section
    refreshes its tables after each)."""
    with gr.Accordion("Checks: battles whose better side is known", open=False):
        gr.Markdown(
            "A check reaches every reviewer of the session, unannounced, and counts for their "
            "accuracy only, never for the ratings. Pick a session above first."
        )
        with gr.Row():
            battle = gr.Dropdown(label="Battle", choices=[], allow_custom_value=True, scale=3,
                                 elem_id="ft-m-check-battle")  # fmt: skip
            better = gr.Radio(["A", "B"], label="Better side", elem_id="ft-m-check-better")
            mark = gr.Button("Mark as a check", size="sm", elem_id="ft-m-check-mark")
        preview = gr.Markdown("", elem_id="ft-m-check-preview")
        prompt = gr.Textbox(label="Or a new check: prompt", elem_id="ft-m-check-prompt")
        with gr.Row():
            better_answer = gr.Textbox(label="Better answer", lines=2,
                                       elem_id="ft-m-check-better-answer")  # fmt: skip
            worse_answer = gr.Textbox(label="Worse answer", lines=2,
                                      elem_id="ft-m-check-worse-answer")  # fmt: skip
        add = gr.Button("Add the check", size="sm", elem_id="ft-m-check-add")
        with gr.Row():
            accuracy = gr.Textbox(label="Minimum accuracy on checks (e.g. 80%; empty: none)",
                                  scale=3, elem_id="ft-m-min-accuracy")  # fmt: skip
            set_accuracy = gr.Button("Set", size="sm", elem_id="ft-m-min-accuracy-set")

    @guarded(services, Role.ADMIN)
    def list_battles(request: gr.Request, session: str | None):
        if not session:
            return gr.update(choices=[], value=None), ""
        with services.db() as db:
            battles = check_candidates(db, session)
            threshold = get_session(db, session).min_gold_accuracy
        shown = "none" if threshold is None else f"{threshold:.0%}"
        return (gr.update(choices=[_label(b) for b in battles], value=None),
                f"Minimum accuracy on checks for this session: {shown}.")  # fmt: skip

    @guarded(services, Role.ADMIN)
    def show_battle(request: gr.Request, picked: str | None) -> str:
        if not picked:
            return ""
        with services.db() as db:
            b = battle_from_label(db, picked)
        return (f"**Prompt:** {escape_markdown(one_line(b.prompt[-1]['content'], 300))}\n\n"
                f"**A:** {escape_markdown(one_line(_answer(b.conversation_a), 600))}\n\n"
                f"**B:** {escape_markdown(one_line(_answer(b.conversation_b), 600))}")  # fmt: skip

    @guarded(services, Role.ADMIN)
    def mark_picked(request: gr.Request, picked: str | None, side: str | None) -> str:
        picked = require(picked, "choose a battle first")
        with services.db() as db:
            target = battle_from_label(db, picked)
            battle = mark_check(db, target.id, require(side, "choose the better side, A or B"))
        return f"Battle #{battle.id} is a check: {battle.gold_choice.upper()} is the better side."

    @guarded(services, Role.ADMIN)
    def add_new(request: gr.Request, session: str | None, text: str, good: str, bad: str):
        session = require(session, "choose a session first")
        with services.db() as db:
            battle = add_check(db, session, text, good, bad, current_user(services, request).name)
        return f"Added check battle #{battle.id} to {escape_markdown(session)}."

    @guarded(services, Role.ADMIN)
    def set_threshold(request: gr.Request, session: str | None, typed: str) -> str:
        session = require(session, "choose a session first")
        value = parse_accuracy(typed)
        with services.db() as db:
            set_min_accuracy(db, session, value)
        if value is None:
            return f"{escape_markdown(session)}: every reviewer's votes count."
        return (f"{escape_markdown(session)}: the Leaderboard also shows the ratings without "
                f"reviewers below {value:.0%} on checks.")  # fmt: skip

    chosen.change(list_battles, [chosen], [battle, preview], api_name=False)
    battle.change(show_battle, [battle], [preview], api_name=False)
    return [
        mark.click(mark_picked, [battle, better], [report], api_name="arena_mark_check"),
        add.click(add_new, [chosen, prompt, better_answer, worse_answer], [report],
                  api_name="arena_add_check"),
        set_accuracy.click(set_threshold, [chosen, accuracy], [report],
                           api_name="arena_min_accuracy"),
    ]  # fmt: skip


def _label(battle: Battle) -> str:
    check = f" · check: {battle.gold_choice.upper()} better" if battle.gold_choice else ""
    return f"#{battle.id}{check} · {one_line(battle.prompt[-1]['content'], 60)}"


def _answer(conversation: list[dict[str, str]]) -> str:
    return next((m["content"] for m in reversed(conversation) if m["role"] == "assistant"), "")
