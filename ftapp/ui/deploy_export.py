"""The Deploy tab's export section (admins): merge an adapter into its base model as a
standard model folder, push an adapter or the merged model to the Hugging Face Hub with a
generated model card, and see where a model went. The work runs in a child process
(ftapp/deploy/child.py): the web process never loads model weights."""

from __future__ import annotations

import gradio as gr

from ftapp.deploy.child import run_export
from ftapp.errors import ValidationError
from ftapp.records import Role
from ftapp.services import Services
from ftapp.store.exports import exports_of
from ftapp.ui.common import current_user, escape_markdown, fresh_choices_on_focus, guarded

EXPORT_HEADERS = ["when (UTC)", "kind", "where", "url", "by"]


def build_export_section(services: Services) -> list[tuple]:
    """The section; returns the (handler, inputs, outputs) to run when the page loads."""
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
    outcome = gr.Markdown("", elem_id="ft-export-outcome")
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
    def do_merge(request: gr.Request, chosen: str | None) -> str:
        if not chosen:
            raise ValidationError("choose an adapter or checkpoint to merge")
        line = run_export(services.settings, "merge", chosen, current_user(services, request).name)
        return escape_markdown(line)

    @guarded(services, Role.ADMIN)
    def do_push(request: gr.Request, chosen: str | None, repo: str, secret: str,
                as_merged: bool, is_private: bool) -> str:  # fmt: skip
        if not chosen:
            raise ValidationError("choose an adapter or checkpoint to push")
        line = run_export(
            services.settings, "push", chosen, current_user(services, request).name,
            repo_id=(repo or "").strip(), merged=bool(as_merged), private=bool(is_private),
            token=(secret or "").strip() or None,
        )  # fmt: skip
        return escape_markdown(line)

    merge.click(do_merge, [model], [outcome], api_name="export_merge").then(
        listing, [model], [exports], api_name=False
    )
    pushed = push.click(do_push, [model, repo_id, token, merged, private], [outcome],
                        api_name="export_push")  # fmt: skip
    pushed.then(listing, [model], [exports], api_name=False)
    model.change(listing, [model], [exports], api_name="export_list")
    return [(choices, [model], [model])]
