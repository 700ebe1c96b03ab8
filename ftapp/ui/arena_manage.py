"""Arena tab, Manage section (admins): prompt-engineered contestants, the pool free battles
draw from, and evaluation sessions: create one, watch its answers being generated, retry
failed answers or open without them, close it; its checks are arena_checks.py's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ftapp.arena.contestants import (
    add_prompt_variant,
    all_contestants,
    pool_contestants,
    set_pool,
)
from ftapp.arena.sessions import (
    SessionSummary,
    close_session,
    generation_progress,
    get_session,
    open_if_generated,
    retry_failed,
    session_summaries,
    size_warning,
    start_session,
)
from ftapp.names import BASE
from ftapp.records import Role
from ftapp.services import Services
from ftapp.serving.backend import MAX_NEW_TOKENS, sampling_from_fields
from ftapp.ui.arena_checks import build_checks
from ftapp.ui.common import (
    TabWiring,
    contestant_names,
    current_user,
    escape_markdown,
    fresh_choices_on_focus,
    guarded,
    prompt_source,
    prompt_source_fields,
    require,
    to_int,
    version_labels,
)

POLL_SECONDS = 2.0
SESSION_HEADERS = ["session", "status", "answers", "failed", "battles", "votes",
                   "reviewers per battle", "contestants", "prompts from",
                   "why answers failed"]  # fmt: skip


@dataclass(frozen=True)
class Part:
    """One part of the Manage section: what the refresh after its events fills, and the events."""

    outputs: list[Any]
    events: list[Any]


def build_manage_section(services: Services) -> TabWiring:
    """The admin forms, the main one first (a new session), then the sessions and what can be
    done with one, then the contestants; every change redraws the tables and pickers of all
    of them."""
    report = gr.Markdown("", elem_id="ft-m-report", render=False)  # placed below the new one
    gr.Markdown("### Evaluation sessions")
    new_session = _build_new_session(services, report)
    report.render()
    sessions, chosen, timer = _build_sessions(services, report)
    sessions.events.extend(build_checks(services, chosen, report))
    contestants = _build_contestants(services, report)

    @guarded(services, Role.ADMIN)
    def refresh(request: gr.Request, current: str | None, version: str | None):
        with services.db() as db:
            found = all_contestants(db, services.served_base)
            enabled = {c.name for c in pool_contestants(db, services.served_base)}
            summaries = session_summaries(db)
            rows = [_session_row(summary) for summary in summaries]
        names = [c.name for c in found]
        models = [c.name for c in found if c.name == c.model]
        table = [[c.name, c.model, c.system_prompt, "yes" if c.name in enabled else ""]
                 for c in found]  # fmt: skip
        session_names = [summary.session.name for summary in summaries]
        versions = version_labels(services)
        return (
            table,
            gr.update(choices=models),
            gr.update(choices=names, value=[n for n in names if n in enabled]),
            rows,
            # The chosen session is left as it is: this runs after an action, and the admin
            # may have picked another one meanwhile (the timer keeps the actions right then).
            gr.update(choices=session_names),
            *_action_states(next((s for s in summaries if s.session.name == current), None)),
            gr.update(choices=names),
            # The newest version is the likely one (the Train tab picks it too).
            gr.update(
                choices=versions,
                value=version if version in versions else (versions[0] if versions else None),
            ),  # fmt: skip
        )

    outputs = [*contestants.outputs, *sessions.outputs, *new_session.outputs]
    inputs = [chosen, new_session.outputs[-1]]
    for event in [*contestants.events, *sessions.events, *new_session.events]:
        event.then(refresh, inputs, outputs, api_name=False)
    return TabWiring(on_load=((refresh, inputs, outputs),), timers=(timer,))


def _build_contestants(services: Services, report: gr.Markdown) -> Part:
    gr.Markdown("### Contestants")
    contestants_table = gr.Dataframe(headers=["name", "model", "system prompt", "in pool"],
                                     interactive=False, wrap=True)  # fmt: skip
    with gr.Accordion("Add a prompt-engineered contestant", open=False):
        with gr.Row():
            variant_name = gr.Textbox(label="Name", elem_id="ft-m-variant-name")
            variant_model = gr.Dropdown([BASE], value=BASE, label="Runs on",
                                        allow_custom_value=True)  # fmt: skip
        variant_prompt = gr.Textbox(label="System prompt", lines=3, elem_id="ft-m-variant-prompt")
        add_variant = gr.Button("Add contestant", elem_id="ft-m-add-variant")
    # Multiselect dropdowns that take any name: API clients don't load the page's choices,
    # and the core checks every name anyway.
    pool = gr.Dropdown(label="Free battles draw from", choices=[], multiselect=True,
                       allow_custom_value=True, elem_id="ft-m-pool")  # fmt: skip
    save_pool = gr.Button("Save pool", elem_id="ft-m-save-pool")

    @guarded(services, Role.ADMIN)
    def add(request: gr.Request, new_name: str, model: str, system_prompt: str) -> str:
        with services.db() as db:
            added = add_prompt_variant(
                db, services.served_base, new_name, system_prompt,
                model=model or BASE, user=current_user(services, request).name,
            )  # fmt: skip
        return f"Added contestant **{escape_markdown(added.name)}**."

    @guarded(services, Role.ADMIN)
    def save(request: gr.Request, names: list[str]) -> str:
        with services.db() as db:
            set_pool(db, services.served_base, names or [], current_user(services, request).name)
        return f"Free battles now draw from {len(names)} contestants."

    events = [
        add_variant.click(add, [variant_name, variant_model, variant_prompt], [report],
                          api_name="arena_add_contestant"),
        save_pool.click(save, [pool], [report], api_name="arena_save_pool"),
    ]  # fmt: skip
    return Part([contestants_table, variant_model, pool], events)


def _build_sessions(services: Services, report: gr.Markdown) -> tuple[Part, gr.Dropdown, gr.Timer]:
    """The sessions table, refreshed on a timer, and what can be done with one session."""
    sessions_table = gr.Dataframe(headers=SESSION_HEADERS, interactive=False, wrap=True,
                                  elem_id="ft-m-sessions")  # fmt: skip
    # Each action is enabled only when it applies to the chosen session: no red Close with
    # nothing chosen.
    with gr.Row():
        chosen = gr.Dropdown(label="Session", choices=[], allow_custom_value=True, scale=3,
                             elem_id="ft-m-session")  # fmt: skip
        retry = gr.Button("Retry failed answers", size="sm", interactive=False,
                          elem_id="ft-m-retry")  # fmt: skip
        open_anyway = gr.Button("Open without failed answers", size="sm", interactive=False,
                                elem_id="ft-m-open")  # fmt: skip
        close = gr.Button("Close session", size="sm", variant="stop", interactive=False,
                          elem_id="ft-m-close")  # fmt: skip
    actions = [retry, open_anyway, close]

    @guarded(services, Role.ADMIN)
    def show_sessions(request: gr.Request, current: str | None) -> tuple:
        with services.db() as db:
            summaries = session_summaries(db)
        chosen_one = next((s for s in summaries if s.session.name == current), None)
        return [_session_row(summary) for summary in summaries], *_action_states(chosen_one)

    events = [
        retry.click(_session_action(services, _retry), [chosen], [report],
                    api_name="arena_retry"),
        open_anyway.click(_session_action(services, _open), [chosen], [report],
                          api_name="arena_open"),
        close.click(_session_action(services, _close), [chosen], [report],
                    api_name="arena_close"),
    ]  # fmt: skip
    timer = gr.Timer(POLL_SECONDS, active=False)  # started for admins when the page loads
    timer.tick(show_sessions, [chosen], [sessions_table, *actions], api_name=False,
               show_progress="hidden")  # fmt: skip
    chosen.change(show_sessions, [chosen], [sessions_table, *actions], api_name=False)
    return Part([sessions_table, chosen, *actions], events), chosen, timer


def _action_states(summary: SessionSummary | None) -> list[dict]:
    """Retry, Open anyway and Close, each clickable only when it would do something."""
    if summary is None:
        return [gr.update(interactive=False)] * 3
    status, failed = summary.session.status.value, summary.answers.failed
    return [
        gr.update(interactive=failed > 0 and status != "closed"),
        gr.update(interactive=status == "generating" and failed > 0),
        gr.update(interactive=status != "closed"),
    ]


def _session_action(services: Services, action):
    @guarded(services, Role.ADMIN)
    def run(request: gr.Request, session_name: str | None) -> str:
        session_name = require(session_name, "choose a session first")
        with services.db() as db:
            target = get_session(db, session_name)
            text = action(db, target)
        if action is _retry:
            services.answer_generator.wake()
        return text

    return run


def _retry(db, target) -> str:
    count = retry_failed(db, target.id)
    return f"{count} failed answers of {escape_markdown(target.name)} will be generated again."


def _open(db, target) -> str:
    open_if_generated(db, target.id, even_with_failures=True)
    return f"Session {escape_markdown(target.name)} is open."


def _close(db, target) -> str:
    close_session(db, target.id)
    return f"Session {escape_markdown(target.name)} is closed: no more votes."


def _build_new_session(services: Services, report: gr.Markdown) -> Part:
    with gr.Accordion("New session", open=True):
        with gr.Row():
            name = gr.Textbox(label="Name", elem_id="ft-m-session-name")
            overlap = gr.Number(value=1, precision=0, minimum=1, label="Reviewers per battle",
                                elem_id="ft-m-overlap")  # fmt: skip
        instructions = gr.Textbox(label="Instructions for reviewers", lines=3)
        contestants = gr.Dropdown(label="Contestants (two or more)", choices=[],
                                  multiselect=True, allow_custom_value=True,
                                  elem_id="ft-m-contestants")  # fmt: skip
        source, version, split, prompt_file = prompt_source_fields(
            services, "Prompts", "Prompt file", "ft-m"
        )
        reviewers = gr.Textbox(label="Who may take part (comma-separated; empty: everyone)")
        with gr.Row():
            temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="Temperature")
            top_p = gr.Slider(0.05, 1, value=0.95, step=0.05, label="Top-p")
            max_new_tokens = gr.Number(value=256, precision=0, minimum=1,
                                       maximum=MAX_NEW_TOKENS, label="Max new tokens")  # fmt: skip
            seed = gr.Textbox(value="", label="Seed (empty: random)")
        create = gr.Button("Create session", variant="primary", elem_id="ft-m-create")
    fresh_choices_on_focus(services, version, lambda: version_labels(services), "session_versions")
    fresh_choices_on_focus(
        services, contestants, lambda: contestant_names(services), "session_contestant_names"
    )
    fields = [name, overlap, instructions, contestants, source, version, split, prompt_file,
              reviewers, temperature, top_p, max_new_tokens, seed]  # fmt: skip
    created = create.click(_creator(services), fields, [report], api_name="arena_create_session")
    return Part([contestants, version], [created])


def _creator(services: Services):
    @guarded(services, Role.ADMIN)
    def create_new(request: gr.Request, new_name: str, n_overlap: int | None, text: str,
                   picked: list[str], where: str, version_label: str | None, split_name: str,
                   upload: str | None, who: str, temp: float, p: float, max_tokens: int | None,
                   seed_value: str):  # fmt: skip
        sampling = sampling_from_fields(temperature=temp, top_p=p, max_new_tokens=max_tokens,
                                        seed=seed_value)  # fmt: skip
        source = prompt_source(where, version_label, upload)
        with services.db() as db:
            session = start_session(
                db, services.served_base, name=new_name, contestants=picked or [],
                split=split_name, sampling=sampling,
                overlap=to_int(n_overlap, "reviewers per battle", minimum=1), instructions=text,
                reviewers=who or "", user=current_user(services, request).name, **source,
            )  # fmt: skip
            answers = generation_progress(db, session.id).total
        services.answer_generator.wake()
        text = (f"Created session **{escape_markdown(session.name)}**: {answers} answers are "
                "being generated; it opens to reviewers when they are in.")  # fmt: skip
        warning = size_warning(answers // len(session.contestants), session.overlap)
        return text + (f"\n\n**Too few to decide:** {warning}" if warning else "")

    return create_new


def _session_row(summary: SessionSummary) -> list:
    session, answers = summary.session, summary.answers
    return [
        session.name,
        session.status.value,
        f"{answers.done}/{answers.total}",
        answers.failed,
        summary.n_battles,
        summary.n_votes,
        session.overlap,
        ", ".join(c.name for c in session.contestants),
        session.source,
        "; ".join(summary.failures),
    ]
