"""Deploy tab, API keys (admins): the keys a team's services call the app's OpenAI-compatible
API with (ftapp/api.py). Make one (shown once, here, and never again), see them all with when
each was last used, revoke one. The logic is deploy/api_keys.py's, as for `ftapp keys`."""

from __future__ import annotations

import gradio as gr

from ftapp.deploy.api_keys import create_key, list_keys, revoke_key
from ftapp.records import Role
from ftapp.services import Services
from ftapp.ui.common import TabWiring, current_user, escape_markdown, guarded, require, to_int

KEY_HEADERS = ["name", "key starts", "models", "per minute", "created", "last used", "revoked"]


def build_keys_section(services: Services) -> TabWiring:
    """The section; the page's load fills its table and the revoke picker."""
    gr.Markdown("### API keys\nEach service calling the endpoint gets a key of its own; "
                "the monitoring counts calls per key.")  # fmt: skip
    with gr.Row():
        name = gr.Textbox(label="New key's name", scale=2, elem_id="ft-keys-name")
        models = gr.Textbox(value="production", scale=2, elem_id="ft-keys-models",
                            label="Models it may call (comma-separated; * for any)")  # fmt: skip
        # 0, not empty, for no limit: the page sends an empty number as 0.
        rate = gr.Number(
            value=0,
            precision=0,
            minimum=0,
            scale=1,
            elem_id="ft-keys-rate",
            label="Requests a minute (0: no limit)",
        )
        create = gr.Button("Create key", variant="primary", scale=1, elem_id="ft-keys-create")
    made = gr.Markdown("", elem_id="ft-keys-made")
    table = gr.Dataframe(headers=KEY_HEADERS, interactive=False, label="Keys",
                         elem_id="ft-keys-table")  # fmt: skip
    with gr.Row():
        picked = gr.Dropdown(label="Key", choices=[], allow_custom_value=True, scale=3,
                             elem_id="ft-keys-picked")  # fmt: skip
        revoke = gr.Button("Revoke", variant="stop", scale=1, elem_id="ft-keys-revoke")

    @guarded(services, Role.ADMIN)
    def show(request: gr.Request):
        with services.db() as db:
            keys = list_keys(db)
        rows = [[k.name, f"{k.prefix}…", ", ".join(k.models), k.rate_per_min or "",
                 k.created_at[:16], (k.last_used_at or "never")[:16],
                 f"{k.revoked_at[:16]} by {k.revoked_by}" if k.revoked_at else ""]
                for k in keys]  # fmt: skip
        active = [k.name for k in keys if k.is_active]
        return rows, gr.update(choices=active, value=None)

    @guarded(services, Role.ADMIN)
    def make(request: gr.Request, new_name: str, allowed: str, per_minute):
        limit = to_int(per_minute or 0, "requests a minute", minimum=0) or None
        with services.db() as db:
            key, secret = create_key(db, new_name, current_user(services, request).name,
                                     (allowed or "").split(","), limit)  # fmt: skip
        text = (f"Key **{escape_markdown(key.name)}**, shown this once (it is not stored): "
                f"`{secret}`")  # fmt: skip
        return text, "", *show(request)

    @guarded(services, Role.ADMIN)
    def revoke_picked(request: gr.Request, chosen: str | None):
        chosen = require(chosen, "choose a key to revoke")
        with services.db() as db:
            revoke_key(db, chosen, current_user(services, request).name)
        return f"Key **{escape_markdown(chosen)}** is revoked: it opens nothing now.", *show(
            request
        )

    outputs = [table, picked]
    create.click(make, [name, models, rate], [made, name, *outputs], api_name="keys_create")
    revoke.click(revoke_picked, [picked], [made, *outputs], api_name="keys_revoke")
    return TabWiring(on_load=((show, [], outputs),))
