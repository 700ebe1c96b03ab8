"""The battle panel both Arena modes share: answers A and B side by side, the four votes,
optional 1-5 scores and a comment, and the reveal after the vote.

Which battle is shown lives in a gr.State (kept on the server, never sent to the browser);
the core checks on every call that the battle was given to the signed-in reviewer. Model
names appear only in the reveal, produced by the vote itself. In an evaluation session the
vote also answers with the reviewer's progress line, so a round is two events (the next
battle, the vote), not three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ftapp.arena.battles import BattleView, battle_view, record_vote
from ftapp.arena.sessions import ReviewerProgress, reviewer_progress
from ftapp.errors import ValidationError
from ftapp.records import BattleStatus, Role, VoteChoice
from ftapp.services import Services
from ftapp.ui.common import chat_messages, current_user, escape_markdown, guarded

# Labels with their keyboard shortcut.
VOTES = {
    VoteChoice.A: "A is better (1)",
    VoteChoice.B: "B is better (2)",
    VoteChoice.TIE: "Tie (3)",
    VoteChoice.BOTH_BAD: "Both are bad (4)",
}
SCORES = ["1", "2", "3", "4", "5"]


@dataclass
class BattlePanel:
    battle_id: gr.State
    chat_a: gr.Chatbot
    chat_b: gr.Chatbot
    buttons: dict[VoteChoice, gr.Button]
    score_a: gr.Radio
    score_b: gr.Radio
    comment: gr.Textbox
    reveal: gr.Markdown
    votes: list[Any]  # the vote events, for chaining

    @property
    def outputs(self) -> list[Any]:
        """What `render` fills, in its order: the two answers, then the verdict outputs."""
        return [self.chat_a, self.chat_b, *self.verdict_outputs]

    @property
    def verdict_outputs(self) -> list[Any]:
        """What a vote fills (`render_verdict`): all but the two answers, which a vote leaves
        as they are (sending them again would cost each vote two conversations' worth of
        work)."""
        return [self.reveal, *self.buttons.values(), self.score_a, self.score_b, self.comment]


def build_battle_panel(services: Services, prefix: str, progress: gr.HTML | None = None
                       ) -> BattlePanel:  # fmt: skip
    """The panel; `prefix` keeps element ids unique (the shortcuts click them by id). With
    `progress`, each vote also fills it with the reviewer's progress in the battle's session."""
    battle_id = gr.State(None)
    # Each pane opens at the question (no scrolling to the end of a long answer), with a copy
    # button per message and none of Gradio's share or clear icons: nothing to do but read.
    with gr.Row(equal_height=True):
        chat_a, chat_b = (
            gr.Chatbot(label=side, height=380, render_markdown=False, autoscroll=False,
                       buttons=["copy"], elem_id=f"ft-{prefix}-chat-{side.lower()}")
            for side in ("A", "B")
        )  # fmt: skip
    reveal = gr.Markdown("", elem_id=f"ft-{prefix}-reveal")
    with gr.Row():
        buttons = {
            choice: gr.Button(label, interactive=False, elem_id=f"ft-{prefix}-vote-{choice}")
            for choice, label in VOTES.items()
        }
    with gr.Accordion("Scores and comment (optional)", open=False):
        with gr.Row():
            score_a = gr.Radio(SCORES, label="Score for A (1-5)", elem_id=f"ft-{prefix}-score-a")
            score_b = gr.Radio(SCORES, label="Score for B (1-5)", elem_id=f"ft-{prefix}-score-b")
        comment = gr.Textbox(label="Comment", lines=2, elem_id=f"ft-{prefix}-comment")
    panel = BattlePanel(battle_id, chat_a, chat_b, buttons, score_a, score_b, comment, reveal, [])
    vote_outputs = panel.verdict_outputs + ([] if progress is None else [progress])
    for choice, button in buttons.items():
        panel.votes.append(
            button.click(
                _vote_handler(services, choice, with_progress=progress is not None),
                [battle_id, score_a, score_b, comment],
                vote_outputs,
                api_name=f"{prefix}_vote_{choice}",
            )
        )
    return panel


def _vote_handler(services: Services, choice: VoteChoice, with_progress: bool):
    @guarded(services, Role.REVIEWER)
    def vote(request: gr.Request, battle_id: int | None, score_a: str | None,
             score_b: str | None, comment: str) -> tuple:  # fmt: skip
        if battle_id is None:
            raise ValidationError("there is no battle to vote on yet")
        user = current_user(services, request)
        with services.db() as db:
            view = record_vote(
                db, int(battle_id), user.name, choice.value,
                score_a=_score(score_a), score_b=_score(score_b), comment=comment or "",
            )  # fmt: skip
            verdict = render_verdict(view)
            if not with_progress:
                return verdict
            # The battle was given to this reviewer (record_vote checked), so its session's
            # progress is theirs to see.
            line = "" if view.session_id is None else progress_html(
                reviewer_progress(db, view.session_id, user.name))  # fmt: skip
        return (*verdict, line)

    vote.__name__ = f"vote_{choice}"
    return vote


# Run in the browser after a new battle is shown: both panes back at their top.
SCROLL_TO_TOP_JS = """
(...args) => {
  for (const side of ['a', 'b']) {
    document.querySelectorAll(`[id^=ft-][id$=-chat-${side}] *`).forEach((node) => {
      if (node.scrollTop) node.scrollTop = 0;
    });
  }
  return args;
}
"""


def current_view(services: Services, battle_id: int, reviewer: str) -> BattleView:
    with services.db() as db:
        return battle_view(db, battle_id, reviewer)


def render(view: BattleView | None, note: str = "") -> tuple:
    """The panel's outputs for a battle (or an empty panel with a note)."""
    chats = ([], []) if view is None else (
        chat_messages(view.conversation_a), chat_messages(view.conversation_b))  # fmt: skip
    return (*chats, *render_verdict(view, note))


def render_verdict(view: BattleView | None, note: str = "") -> tuple:
    """`BattlePanel.verdict_outputs` for a battle: the reveal (or the note), votes, scores and
    comment, open or locked."""
    if view is None:
        disabled = [gr.update(interactive=False)] * len(VOTES)
        return (note, *disabled, None, None, "")
    can_vote = not view.is_locked and view.status != BattleStatus.FAILED
    if view.is_locked:
        note = _reveal(view)
    elif view.status == BattleStatus.FAILED:
        note = (f"⚠️ {escape_markdown(view.error or 'an answer failed')}. This battle can't be "
                "judged; start the next one.")  # fmt: skip
    buttons = [gr.update(interactive=can_vote)] * len(VOTES)
    scores = [gr.update(value=_score_text(s), interactive=can_vote) for s in _scores(view)]
    comment = gr.update(value=view.vote.comment if view.vote else "", interactive=can_vote)
    return (note, *buttons, *scores, comment)


def progress_html(progress: ReviewerProgress) -> str:
    """The progress line of an evaluation session: this reviewer's share, then everyone's."""
    total = progress.judged + progress.remaining
    target = progress.session_target
    session_share = f"{progress.session_votes / target:.0%}" if target else "-"
    return (
        f'<div class="ft-progress"><progress value="{progress.judged}" max="{max(total, 1)}" '
        f'style="width:100%"></progress><div>You judged {progress.judged} of {total} '
        f"battles · the session is {session_share} complete</div></div>"
    )


def streaming(text_a: str, text_b: str, view: BattleView) -> tuple:
    """The panel while answers stream in: votes are open already (a slow stream never
    blocks voting)."""
    conversation_a = [*view.conversation_a, {"role": "assistant", "content": text_a}]
    conversation_b = [*view.conversation_b, {"role": "assistant", "content": text_b}]
    return chat_messages(conversation_a), chat_messages(conversation_b)


def _reveal(view: BattleView) -> str:
    choice = VOTES[view.vote.choice].rsplit(" ", 1)[0]
    early = " (cast while an answer was still coming in)" if view.vote.is_early else ""
    return (
        f"**A was {escape_markdown(view.model_a or '')}, B was "
        f"{escape_markdown(view.model_b or '')}.** Your vote: {choice}{early}. Votes are final."
    )


def _scores(view: BattleView) -> tuple[int | None, int | None]:
    return (view.vote.score_a, view.vote.score_b) if view.vote else (None, None)


def _score(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    if str(value) not in SCORES:
        raise ValidationError(f"a score is a whole number from 1 to 5, got {value!r}")
    return int(value)


def _score_text(value: int | None) -> str | None:
    return None if value is None else str(value)
