"""Deploy tab, canary release (admins): try a candidate on a share of production beside the
stable model, watch the two side by side on the same window, then promote it fully or roll it
back; it rolls itself back when it does significantly worse (deploy/canary_release.py)."""

from __future__ import annotations

import gradio as gr

from ftapp.deploy.canary_release import (
    Comparison,
    compare,
    parse_share,
    promote_canary,
    roll_back_canary,
    start_canary,
)
from ftapp.records import Role
from ftapp.services import Services
from ftapp.store.production import active_canary, list_canaries
from ftapp.ui.common import TabWiring, current_user, escape_markdown, guarded, require

SIDE_HEADERS = ["", "model", "requests", "errors", "rated", "thumbs up", "p50 ms"]
HISTORY_HEADERS = ["#", "candidate", "stable", "share", "started", "by", "ended", "outcome",
                   "why"]  # fmt: skip


def build_canary_section(services: Services) -> TabWiring:
    gr.Markdown("### Canary release\nA candidate answers a share of production, chosen by API "
                "key (or user) so each client meets one model; it rolls itself back when its "
                "errors or thumbs down are significantly worse.")  # fmt: skip
    with gr.Row():
        candidate = gr.Dropdown(label="Candidate", choices=[], allow_custom_value=True, scale=3,
                                elem_id="ft-canary-candidate")  # fmt: skip
        share = gr.Textbox(value="10%", label="Share of traffic", scale=1,
                           elem_id="ft-canary-share")  # fmt: skip
        start = gr.Button("Start canary", variant="primary", scale=1, elem_id="ft-canary-start")
    status = gr.Markdown("", elem_id="ft-canary-status")
    sides = gr.Dataframe(headers=SIDE_HEADERS, interactive=False, label="Side by side",
                         elem_id="ft-canary-sides")  # fmt: skip
    with gr.Row():
        reason = gr.Textbox(label="Why (for the history)", scale=3, elem_id="ft-canary-reason")
        promote_button = gr.Button("Promote fully", scale=1, elem_id="ft-canary-promote")
        rollback_button = gr.Button("Roll back", variant="stop", scale=1,
                                    elem_id="ft-canary-rollback")  # fmt: skip
    history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, wrap=True,
                           label="Canary releases, newest first",
                           elem_id="ft-canary-history")  # fmt: skip

    @guarded(services, Role.ADMIN)
    def show(request: gr.Request):
        settings = services.settings
        with services.db() as db:
            running = active_canary(db)
            seen = compare(db, running, settings.canary_min_requests) if running else None
            past = list_canaries(db)
        return (gr.update(choices=services.servable_models()), _status(seen, settings),
                _sides(seen), [_history_row(c) for c in past])  # fmt: skip

    @guarded(services, Role.ADMIN)
    def begin(request: gr.Request, chosen: str | None, typed: str):
        with services.db() as db:
            start_canary(db, services.served_base, require(chosen, "choose a candidate"),
                         parse_share(typed), current_user(services, request).name)  # fmt: skip
        return show(request)

    @guarded(services, Role.ADMIN)
    def promote(request: gr.Request, why: str):
        with services.db() as db:
            promote_canary(db, services.served_base, current_user(services, request).name,
                           override_reason=why or "")  # fmt: skip
        return show(request)

    @guarded(services, Role.ADMIN)
    def roll_back(request: gr.Request, why: str):
        with services.db() as db:
            roll_back_canary(db, current_user(services, request).name, why or "")
        return show(request)

    outputs = [candidate, status, sides, history]
    start.click(begin, [candidate, share], outputs, api_name="canary_start")
    promote_button.click(promote, [reason], outputs, api_name="canary_promote")
    rollback_button.click(roll_back, [reason], outputs, api_name="canary_rollback")
    return TabWiring(on_load=((show, [], outputs),))


def _status(seen: Comparison | None, settings) -> str:
    if seen is None:
        return "No canary is running."
    canary = seen.canary
    text = (f"**{escape_markdown(canary.candidate)}** answers {canary.share:.0%} of "
            f"production beside **{escape_markdown(canary.stable)}** since "
            f"{canary.started_at[:16]} UTC.")  # fmt: skip
    if seen.errors_p is None:
        text += (f" It rolls itself back when worse, once each side has "
                 f"{settings.canary_min_requests} requests.")  # fmt: skip
    else:
        text += (f" Candidate fails more often: one-sided Fisher exact p = "
                 f"{seen.errors_p:.2g}.")  # fmt: skip
    if seen.thumbs_down_p is not None:
        text += f" More thumbs down: p = {seen.thumbs_down_p:.2g}."
    return text


def _sides(seen: Comparison | None) -> list[list]:
    if seen is None:
        return []
    both = (("candidate", seen.candidate), ("stable", seen.stable))
    return [[label, side.model, side.requests, side.errors, side.rated,
             "" if side.thumbs_up_rate is None else f"{side.thumbs_up_rate:.0%}",
             "" if side.latency_p50_ms is None else round(side.latency_p50_ms)]
            for label, side in both]  # fmt: skip


def _history_row(canary) -> list:
    return [canary.id, canary.candidate, canary.stable, f"{canary.share:.0%}",
            canary.started_at[:16], canary.started_by, (canary.ended_at or "")[:16],
            canary.outcome or "running", canary.reason or ""]  # fmt: skip
