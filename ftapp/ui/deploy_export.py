"""The Deploy tab's export section (admins): merge an adapter into its base model as a
standard model folder, push an adapter or the merged model to the Hugging Face Hub with a
generated model card, and see where a model went. A merge or push is an export job: the
buttons queue it (bad input is refused before anything is written), the worker runs it in a
child process (the web process never loads model weights), and the section polls its row for
the status, the log and the result: closing the page changes nothing."""

from __future__ import annotations

import gradio as gr

from ftapp.deploy.export_jobs import export_view, queue_merge, queue_push
from ftapp.records import Role
from ftapp.services import Services
from ftapp.store.exports import exports_of
from ftapp.ui.common import (
    TabWiring,
    current_user,
    escape_markdown,
    fresh_choices_on_focus,
    guarded,
    require,
)

EXPORT_HEADERS = ["when (UTC)", "kind", "where", "url", "by"]
POLL_SECONDS = 2.0


def build_export_section(services: Services) -> TabWiring:
    """The section; returns what runs when the page loads and its polling timer."""
    gr.Markdown("### Export and push to the Hugging Face Hub")
    with gr.Row():
        model = gr.Dropdown(label="Adapter or checkpoint", choices=[], allow_custom_value=True,
                            scale=2, elem_id="ft-export-model")  # fmt: skip
        merge = gr.Button("Merge into a model folder", elem_id="ft-export-merge")
    with gr.Row():
        repo_id = gr.Textbox(label="Hub repository (owner/name)", scale=2,
                             elem_id="ft-export-repo")  # fmt: skip
        token = gr.Textbox(label="Hub token (empty: HF_TOKEN or `hf auth login`)",
                           type="password", scale=2)  # fmt: skip
        merged = gr.Checkbox(label="Push the merged model", value=False)
        private = gr.Checkbox(label="Private repository", value=True)
        push = gr.Button("Push", variant="primary", elem_id="ft-export-push")
    with gr.Row():
        job = gr.Number(None, label="Export job # (the last one queued; type one to follow it)",
                        precision=0, scale=1, elem_id="ft-export-job")  # fmt: skip
        outcome = gr.Markdown("", elem_id="ft-export-outcome")
    log_view = gr.Code(label="Export log (tail)", language=None, lines=8,
                       elem_id="ft-export-log")  # fmt: skip
    timer = gr.Timer(POLL_SECONDS, active=False)  # started for admins when the page loads
    exports = gr.Dataframe(headers=EXPORT_HEADERS, interactive=False,
                           label="Where this model went", elem_id="ft-export-list")  # fmt: skip

    def adapter_names() -> list[str]:
        return [n for n in services.servable_models() if n != "base"]

    @guarded(services, Role.ADMIN)
    def choices(request: gr.Request, chosen: str | None):
        names = adapter_names()
        return gr.update(choices=names, value=chosen if chosen in names else None)

    fresh_choices_on_focus(services, model, adapter_names, "export_models")

    @guarded(services, Role.ADMIN)
    def listing(request: gr.Request, chosen: str | None) -> list[list]:
        if not chosen:
            return []
        with services.db() as db:
            rows = exports_of(db, chosen)
        return [[r["created_at"][:19].replace("T", " "), r["kind"], r["target"], r["url"] or "",
                 r["created_by"]] for r in rows]  # fmt: skip

    @guarded(services, Role.ADMIN)
    def do_merge(request: gr.Request, chosen: str | None):
        chosen = require(chosen, "choose an adapter or checkpoint to merge")
        with services.db() as db:
            queued = queue_merge(db, services.settings, chosen,
                                 current_user(services, request).name)  # fmt: skip
        return queued.id, *_watched(queued.id)

    @guarded(services, Role.ADMIN)
    def do_push(request: gr.Request, chosen: str | None, repo: str, secret: str,
                as_merged: bool, is_private: bool):  # fmt: skip
        chosen = require(chosen, "choose an adapter or checkpoint to push")
        with services.db() as db:
            queued = queue_push(
                db, services.settings, chosen, repo, current_user(services, request).name,
                merged=bool(as_merged), private=bool(is_private),
                token=(secret or "").strip() or None,
            )  # fmt: skip
        return queued.id, *_watched(queued.id), ""  # the token leaves the page

    def _watched(job_id: int) -> tuple[str, str]:
        with services.db() as db:
            view = export_view(db, job_id)
        return escape_markdown(view.line), view.log_tail

    @guarded(services, Role.ADMIN)
    def watch(request: gr.Request, job_id: int | None):
        if not job_id:
            return "", ""
        return _watched(int(job_id))

    watched = [outcome, log_view]
    merge.click(do_merge, [model], [job, *watched], api_name="export_merge")
    push.click(do_push, [model, repo_id, token, merged, private], [job, *watched, token],
               api_name="export_push")  # fmt: skip
    job.change(watch, [job], watched, api_name="export_status")
    # The rows where this model went change when a job ends: redrawn with the status.
    timer.tick(watch, [job], watched, api_name=False, show_progress="hidden").then(
        listing, [model], [exports], api_name=False, show_progress="hidden"
    )
    model.change(listing, [model], [exports], api_name="export_list")
    return TabWiring(on_load=((choices, [model], [model]),), timers=(timer,))
