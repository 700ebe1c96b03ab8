"""The About tab: what ftapp is, which engine answers, whether the
data survives a restart, and (admins) one zip of everything. The only tab visitors who are
not signed in can see."""

from __future__ import annotations

import html
from datetime import UTC, datetime

import gradio as gr

from ftapp.errors import ValidationError
from ftapp.records import Role
from ftapp.services import Services
from ftapp.ui.common import TabWiring, current_user, download_path, guarded
from ftapp.ui.handler_times import HANDLER_TIMES

ABOUT = """
## ftapp: fine-tune a language model on your own examples

1. **Data**: upload examples (prompt/completion, chat messages, Alpaca, ShareGPT), fix the bad
   ones, split them and freeze a version.
2. **Train**: LoRA adapters trained in the background, with live loss curves.
3. **Playground**: chat with the base model and every adapter.
4. **Arena**: reviewers judge two anonymous answers side by side.
5. **Leaderboard**: ratings with confidence intervals say whether the fine-tune is better.
"""


SIGN_IN_COLUMNS = ("when (UTC)", "user", "address", "outcome")
SERVER_TIME_COLUMNS = ("action", "calls", "p50 ms", "p95 ms", "p99 ms", "share of a thread")


def build_about_tab(services: Services) -> TabWiring:
    settings = services.settings
    gr.Markdown(ABOUT)
    if settings.ephemeral:
        gr.Markdown(
            "**Warning: this Space has no persistent storage.** Everything here (datasets, "
            "adapters, votes) is lost when it restarts. Admins can download it all below.",
            elem_id="ft-ephemeral-warning",
        )
    if settings.demo:
        gr.Markdown(
            f"**Demo mode.** Training is limited to {settings.demo_max_examples} examples, "
            f"{settings.demo_max_steps} steps and {settings.demo_max_minutes} minutes a job, "
            "so this free machine stays usable. A sample dataset is ready in the Data tab.",
            elem_id="ft-demo-note",
        )
    engine = gr.Markdown("", elem_id="ft-engine")
    with gr.Group(visible=False) as admin_box:
        gr.Markdown(
            "### Everything in one file\nThe database (a consistent copy), uploads, adapters "
            "and exports, as a zip; unzip into an empty FTAPP_HOME to restore."
        )
        export_button = gr.Button("Export everything", elem_id="ft-export-everything")
        exported = gr.File(label="Download", elem_id="ft-everything-file")
        gr.Markdown(
            "### Sign-ins\nThe latest sign-in attempts, newest first (also `ftapp users log`). "
            "A name or an address with too many failures is locked out for a while."
        )
        log_button = gr.Button("Show sign-in log", size="sm", elem_id="ft-sign-in-log-button")
        sign_ins = gr.Dataframe(headers=list(SIGN_IN_COLUMNS), interactive=False,
                                elem_id="ft-sign-in-log")  # fmt: skip
        gr.Markdown(
            "### Server time\nHow long this process spent in each action over the last minutes: "
            "when the page feels slow and these are short, the time went waiting in the queue."
        )
        with gr.Row():
            window = gr.Number(value=10, label="Minutes", minimum=0.1, maximum=24 * 60,
                               elem_id="ft-server-times-window")  # fmt: skip
            times_button = gr.Button("Show server time", size="sm", elem_id="ft-server-times-btn")
        server_times = gr.Dataframe(headers=list(SERVER_TIME_COLUMNS), interactive=False,
                                    elem_id="ft-server-times")  # fmt: skip

    @guarded(services, Role.VISITOR)
    def engine_status(request: gr.Request) -> str:
        status = services.backend.status()
        # ftapp's own line with the server's URL in it: Markdown escapes would show in the
        # link as backslashes (http://127\\.0\\.0\\.1), so only HTML is escaped (as in Deploy).
        return f"Generation: {html.escape(status.detail, quote=False)}"

    @guarded(services, Role.ADMIN)
    def export_everything(request: gr.Request) -> str:
        from ftapp.backup import export_everything as write_zip

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = download_path(current_user(services, request), f"ftapp-everything-{stamp}.zip")
        return str(write_zip(settings, out))

    @guarded(services, Role.ADMIN)
    def show_sign_ins(request: gr.Request) -> list[list[str]]:
        from ftapp.signin import sign_in_log

        with services.db() as db:
            return [[a.at[:19].replace("T", " "), a.user_name, a.address, a.outcome]
                    for a in sign_in_log(db, limit=200)]  # fmt: skip

    @guarded(services, Role.ADMIN)
    def show_server_times(request: gr.Request, minutes: float) -> list[list]:
        if not 0 < minutes <= 24 * 60:
            raise ValidationError("minutes: a number from 0.1 to 1440")
        return [[row.handler, row.calls, round(row.p50_ms, 1), round(row.p95_ms, 1),
                 round(row.p99_ms, 1), round(row.busy_share, 3)]
                for row in HANDLER_TIMES.summary(minutes * 60)]  # fmt: skip

    times_button.click(show_server_times, [window], server_times, api_name="server_times")
    export_button.click(export_everything, None, exported, api_name="export_everything")
    log_button.click(show_sign_ins, None, sign_ins, api_name="sign_in_log")
    return TabWiring(on_load=((engine_status, None, [engine]),), admin_only=(admin_box,))
