"""The Arena tab: blind battles for reviewers.

- Evaluation sessions: pick a session you take part in, read its instructions, and judge its
  battles one after the other (answers were generated beforehand, so nothing waits); a
  progress bar, and a reload or another day picks up where you left off.
- Free battle: write a prompt; two contestants drawn from the pool answer side by side,
  streaming at once; follow up if you like; vote.
- Manage (admins): contestants, the free-battle pool, sessions (arena_manage.py).

Shortcuts (outside text fields): 1 A better, 2 B better, 3 tie, 4 both bad, n next battle.
"""

from __future__ import annotations

import gradio as gr

from ftapp.arena.battles import follow_up, start_free_battle, stream_answers
from ftapp.arena.sessions import next_battle, reviewer_progress, session_for, sessions_for
from ftapp.records import BattleStatus, Role
from ftapp.services import Services
from ftapp.serving.backend import Sampling
from ftapp.ui.arena_battle import (
    SCROLL_TO_TOP_JS,
    build_battle_panel,
    current_view,
    progress_html,
    render,
    streaming,
)
from ftapp.ui.arena_manage import build_manage_section
from ftapp.ui.common import TabWiring, current_user, guarded, message_box, paced, stop_button

DONE = (
    "**You judged every battle of this session. Thank you!** Your votes are in; the admin "
    "reads the results in the Leaderboard. If another session is open to you, pick it above."
)


def build_arena_tab(services: Services, show_manage: bool) -> TabWiring:
    """The Arena's three modes; Manage (admins) is hidden until the page knows the role."""
    with gr.Tabs():
        with gr.Tab("Evaluation sessions", id="arena-sessions"):
            sessions = _build_sessions_mode(services)
        with gr.Tab("Free battle", id="arena-free"):
            _build_free_mode(services)
        with gr.Tab("Manage", id="arena-manage", visible=show_manage) as manage_tab:
            manage = build_manage_section(services)
    return sessions + manage + TabWiring(admin_only=(manage_tab,))


def _build_sessions_mode(services: Services) -> TabWiring:
    with gr.Row():
        session = gr.Dropdown(label="Session", choices=[], allow_custom_value=True, scale=4,
                              elem_id="ft-s-session")  # fmt: skip
        refresh = gr.Button("↻ Refresh", size="sm", scale=1)
    instructions = gr.Markdown("", elem_id="ft-s-instructions")
    progress = gr.HTML("", elem_id="ft-s-progress")
    panel = build_battle_panel(services, "s", progress=progress)
    next_button = gr.Button("Next battle (n)", variant="primary", elem_id="ft-s-next")

    @guarded(services, Role.REVIEWER)
    def list_sessions(request: gr.Request, current: str | None):
        with services.db() as db:
            names = [s.name for s in sessions_for(db, current_user(services, request))]
        return gr.update(choices=names, value=current if current in names else
                         (names[0] if names else None))  # fmt: skip

    def show(request: gr.Request, name: str | None, whole: bool) -> tuple:
        """The battle to judge (the unfinished one, or the next in this reviewer's queue);
        with `whole`, the session's instructions and the progress line too."""
        if not name:
            return (None, "No session selected: an admin opens sessions in Manage.", "",
                    *render(None), gr.update(interactive=False))  # fmt: skip
        user = current_user(services, request)
        with services.db() as db:
            target = session_for(db, name, user)
            battle_id = next_battle(db, target.id, user)
            line = (progress_html(reviewer_progress(db, target.id, user.name))
                    if whole else gr.skip())  # fmt: skip
        # An admin wrote the instructions as Markdown (gr.Markdown sanitizes any HTML).
        text = target.instructions if whole else gr.skip()
        if battle_id is None:
            return None, text, line, *render(None, DONE), gr.update(interactive=False)
        return (battle_id, text, line,
                *render(current_view(services, battle_id, user.name)),
                gr.update(interactive=True))  # fmt: skip

    @guarded(services, Role.REVIEWER)
    def open_session(request: gr.Request, name: str | None):
        """A session chosen, or the page opened on one: all of it."""
        return show(request, name, whole=True)

    @guarded(services, Role.REVIEWER)
    def show_next(request: gr.Request, name: str | None):
        """The next battle. The instructions are on the page already and each vote brought
        the progress line up to date (a new battle in hand leaves it as it is), so neither is
        sent again: the progress line's count is the costliest part of a round."""
        return show(request, name, whole=False)

    outputs = [panel.battle_id, instructions, progress, *panel.outputs, next_button]
    refresh.click(list_sessions, [session], [session], api_name="arena_sessions")
    for shown in (
        session.change(open_session, [session], outputs, api_name="session_open"),
        next_button.click(show_next, [session], outputs, api_name="session_next"),
    ):
        shown.then(None, None, None, js=SCROLL_TO_TOP_JS, api_name=False)  # fmt: skip
    return TabWiring(on_load=((list_sessions, [session], [session]),))


def _build_free_mode(services: Services) -> None:
    gr.Markdown(
        "Write a prompt: two models answer without saying who they are. Follow up as long as "
        "you like, then vote; the names are shown after your vote."
    )
    panel = build_battle_panel(services, "f")
    status = gr.Markdown("", elem_id="ft-f-status")
    message = message_box("ft-f-message", "Your prompt")
    with gr.Row():
        send = gr.Button("Send", variant="primary", elem_id="ft-f-send")
        stop = gr.Button("Stop", variant="secondary", interactive=False, elem_id="ft-f-stop")
        new = gr.Button("New battle (n)", elem_id="ft-f-next")

    @guarded(services, Role.REVIEWER)
    def send_message(request: gr.Request, battle_id: int | None, text: str):
        """Start a battle with this prompt, or follow up in the current one; then stream
        both answers."""
        user = current_user(services, request)
        with services.db() as db:
            view = current_view(services, battle_id, user.name) if battle_id else None
            if view is None or view.is_locked or view.status == BattleStatus.FAILED:
                sampling = Sampling(max_new_tokens=services.settings.arena_max_new_tokens)
                battle_id = start_free_battle(db, services.served_base, user.name, text, sampling)
            else:
                follow_up(db, battle_id, user.name, text)
        view = current_view(services, battle_id, user.name)
        yield (battle_id, "", "Generating…", *render(view), stop_button(True))
        stream = stream_answers(services.db, services.stream_chat, services.served_base,
                                battle_id, user.name)  # fmt: skip
        for text_a, text_b in paced(stream):
            yield (battle_id, gr.skip(), gr.skip(), *streaming(text_a, text_b, view),
                   *[gr.skip()] * (len(panel.outputs) - 2), gr.skip())  # fmt: skip
        final = current_view(services, battle_id, user.name)
        note = "" if final.status == BattleStatus.READY else "Generation failed."
        yield (battle_id, gr.skip(), note, *render(final), stop_button(False))

    @guarded(services, Role.REVIEWER)
    def new_battle(request: gr.Request):
        return (None, "", "", *render(None, "Write a prompt to start a new battle."),
                stop_button(False))  # fmt: skip

    outputs = [panel.battle_id, message, status, *panel.outputs, stop]
    events = [
        send.click(send_message, [panel.battle_id, message], outputs, api_name="free_send"),
        message.submit(send_message, [panel.battle_id, message], outputs, api_name=False),
    ]

    @guarded(services, Role.REVIEWER)
    def stopped(request: gr.Request) -> tuple:
        return "Stopped: the answers are kept as far as they got.", stop_button(False)

    stop.click(stopped, None, [status, stop], api_name=False, cancels=events)
    new.click(new_battle, None, outputs, api_name="free_new", cancels=events)
