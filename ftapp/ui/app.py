"""The whole web app: tabs, keyboard shortcuts, and launching it."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from ftapp.api import build_api
from ftapp.auth import User, check_can_start, single_user_mode, verify_password
from ftapp.errors import FtappError
from ftapp.records import Role
from ftapp.services import Services
from ftapp.signin import LOCKOUT, USER_LOCKOUT
from ftapp.ui.about_tab import build_about_tab
from ftapp.ui.arena_tab import build_arena_tab
from ftapp.ui.common import clear_downloads, current_user, escape_markdown, guarded, role_gate
from ftapp.ui.data_tab import build_data_tab
from ftapp.ui.deploy_tab import build_deploy_tab
from ftapp.ui.evaluate_tab import build_evaluate_tab
from ftapp.ui.http_guard import RequestGuard
from ftapp.ui.leaderboard_tab import build_leaderboard_tab
from ftapp.ui.playground_tab import build_playground_tab
from ftapp.ui.train_tab import build_train_tab

log = logging.getLogger(__name__)

# Keyboard shortcuts, ignored while typing. Data review: a accept, r reject, s swap a pair's
# answers, j or → next, k or ← previous. Arena: 1 A better, 2 B better, 3 tie, 4 both bad,
# n next battle. Each key clicks the first of its buttons that is visible (one per Arena mode).
SHORTCUTS_JS = """
<script>
document.addEventListener('keydown', (event) => {
  const target = event.target;
  const typing = target && (target.isContentEditable ||
    ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  const ids = {a: ['ft-accept'], r: ['ft-reject'], s: ['ft-swap'], j: ['ft-next'],
               ArrowRight: ['ft-next'], k: ['ft-prev'], ArrowLeft: ['ft-prev'],
               '1': ['ft-s-vote-a', 'ft-f-vote-a'], '2': ['ft-s-vote-b', 'ft-f-vote-b'],
               '3': ['ft-s-vote-tie', 'ft-f-vote-tie'],
               '4': ['ft-s-vote-both_bad', 'ft-f-vote-both_bad'],
               n: ['ft-s-next', 'ft-f-next']};
  const button = (ids[event.key] || []).map((id) => document.getElementById(id))
    .find((b) => b && b.offsetParent !== null && !b.disabled);
  if (button) { event.preventDefault(); button.click(); }
});
</script>
"""


# The page's own styles: the model that wrote a Playground reply, shown above it; table
# headers that break between words, never inside one; no clear (trash) icon over a blind
# battle's answers (Gradio's Chatbot has no setting for it, and it only emptied the pane).
CSS = """
[id^=ft-][id$=-chat-a] button[aria-label=Clear],
[id^=ft-][id$=-chat-b] button[aria-label=Clear] { display: none; }
.ft-reply-model { display: inline-block; font-size: 0.8em; font-weight: 600; opacity: 0.7;
                  margin-bottom: 0.2em; }
.table-wrap th, .table-wrap th span { word-break: normal !important;
                                      overflow-wrap: normal !important; hyphens: none; }
"""


def build_app(services: Services) -> gr.Blocks:
    """The page. Every tab is built for everyone, then shown by role when the page loads; what
    protects the data is the role check in every handler, not the hidden tabs. In single-user
    mode everyone is the admin, so every tab shows from the start."""
    with services.db() as db:
        everyone_admin = single_user_mode(db, services.settings)
    # Uploads and the copies of files handed out are deleted after a day (checked hourly).
    with gr.Blocks(title="ftapp", delete_cache=(3600, 86400)) as app:
        with gr.Row():
            gr.Markdown("# ftapp\nFine-tune a language model on your own examples.")
            with gr.Column(scale=0, min_width=320):
                user_line = gr.Markdown("", elem_id="ft-user-line")  # who, and sign out
                if services.settings.auth == "hf":
                    gr.LoginButton(elem_id="ft-login")
                elif not everyone_admin:  # Gradio's password sign-in
                    gr.Button("Sign out", link="/logout", link_target="_self", size="sm",
                              elem_id="ft-sign-out")  # fmt: skip
        with gr.Tabs() as tabs:
            with gr.Tab("Data", id="data", visible=everyone_admin) as data_tab:
                data = build_data_tab(services)
            with gr.Tab("Train", id="train", visible=everyone_admin) as train_tab:
                train = build_train_tab(services)
            with gr.Tab("Playground", id="playground", visible=everyone_admin) as playground_tab:
                playground = build_playground_tab(services)
            with gr.Tab("Arena", id="arena", visible=everyone_admin) as arena_tab:
                arena = build_arena_tab(services, show_manage=everyone_admin)
            with gr.Tab("Leaderboard", id="leaderboard", visible=everyone_admin) as board_tab:
                board = build_leaderboard_tab(services)
            with gr.Tab("Evaluate", id="evaluate", visible=everyone_admin) as evaluate_tab:
                evaluate = build_evaluate_tab(services)
            with gr.Tab("Deploy", id="deploy", visible=everyone_admin) as deploy_tab:
                deploy = build_deploy_tab(services)
            with gr.Tab("About", id="about"):
                about = build_about_tab(services)
        wiring = data + train + playground + arena + board + evaluate + deploy + about
        admin_only = [data_tab, train_tab, playground_tab, board_tab, evaluate_tab, deploy_tab,
                      *wiring.admin_only]  # fmt: skip
        # Polling timers: started only for admins (for anyone else each tick would be refused,
        # with an error on their screen). In single-user mode every admin-only block shows and
        # every timer runs from the start, and the page load leaves them alone.
        admin_timers = list(wiring.timers)
        for timer in admin_timers:
            timer.active = everyone_admin
        for block in admin_only:
            block.visible = everyone_admin

        @guarded(services, Role.VISITOR)
        def show_page(request: gr.Request):
            user = current_user(services, request)
            is_admin, is_reviewer = user.role == Role.ADMIN, user.role != Role.VISITOR
            # Where a signed-in user lands (the About tab is the only one shown before this
            # runs); in single-user mode the page already shows Data, and may have moved on.
            landing = "data" if is_admin else "arena" if is_reviewer else "about"
            timers = [gr.Timer(active=is_admin) for _ in admin_timers]
            # In single-user mode every tab and timer runs already: updating them on load made
            # long Playground streams hang the browser (tests/e2e/test_playground_browser.py).
            if everyone_admin:
                return (gr.skip(), _user_line(services, user),
                        *[gr.skip()] * (1 + len(admin_only) + len(timers)))  # fmt: skip
            return (
                gr.Tabs(selected=landing),
                _user_line(services, user),
                gr.Tab(visible=is_reviewer),
                *[type(block)(visible=is_admin) for block in admin_only],
                *timers,
            )

        page = [tabs, user_line, arena_tab, *admin_only, *admin_timers]
        app.load(show_page, None, page, api_name=False)
        # Reopening the page picks up where things are: datasets, versions, models, the latest
        # job, the engine's state, sessions and the leaderboard. Each load runs only for the
        # roles that may see it, the role its handler's guard requires (the gate fails
        # silently otherwise, so no error pops up).
        for role in (Role.VISITOR, Role.REVIEWER, Role.ADMIN):
            loads = [load for load in wiring.on_load if load[0].ftapp_role == role]
            if role == Role.VISITOR:
                for handler, inputs, outputs in loads:
                    app.load(handler, inputs, outputs, api_name=False)
            elif loads:
                gate = app.load(role_gate(services, role), None, None, api_name=False)
                for handler, inputs, outputs in loads:
                    gate.success(handler, inputs, outputs, api_name=False)
    return app


def _user_line(services: Services, user: User) -> str:
    settings = services.settings
    if not user.is_signed_in:
        if settings.auth == "hf":
            return "Sign in with your Hugging Face account to judge answers in the Arena."
        return "Users were added after this app started: restart it to get the sign-in page."
    if settings.auth == "password":
        with services.db() as db:
            if single_user_mode(db, settings):
                return (
                    "Single-user mode: no sign-in, you are the admin, and only this computer "
                    "can open the app. Add users with `ftapp users add NAME --role admin`."
                )
    return f"Signed in as **{escape_markdown(user.name)}** ({user.role})."


def launch(services: Services, host: str | None = None, port: int | None = None) -> None:
    settings = services.settings
    host = host or settings.host
    port = port or settings.port
    with services.db() as db:
        passwords = settings.auth == "password" and not single_user_mode(db, settings)
    # Gradio's cache (uploads, files handed out) in a folder of ftapp's own, emptied at start:
    # no download outlives the app, and no other Gradio app's files are touched.
    if not os.environ.get("GRADIO_TEMP_DIR"):
        cache = settings.home / "tmp" / "gradio"
        shutil.rmtree(cache, ignore_errors=True)
        os.environ["GRADIO_TEMP_DIR"] = str(cache)
    clear_downloads()
    app = build_app(services)
    # Gradio rebuilds a pandas summary of up to 10,000 past events after every event, for its
    # monitoring page; with 50 reviewers that was a fifth of the app's CPU
    # (benchmarks/load_arena.py). Once per 1,000 events keeps the page, and the CPU.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
    # The summary covers the last 10,000 events by default; each rebuild then took long enough
    # to stall the events in flight (the slowest 1% of Arena calls under load): 1,000 suffice.
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
    # The app's long-lived objects (Gradio's blocks, the tokenizer, the libraries) are moved
    # out of the garbage collector's sight: its full passes walked them all and paused every
    # event in flight (measured under load: the Arena's slowest calls).
    gc.freeze()
    print(f"ftapp is running at http://{host}:{port}  (data in {settings.home})", flush=True)
    app.queue(default_concurrency_limit=8).launch(
        server_name=host,
        server_port=port,
        max_file_size=f"{settings.max_upload_mb}mb",
        head=SHORTCUTS_JS,
        css=CSS,
        show_error=True,
        footer_links=["api"],
        auth=(lambda name, password: _sign_in(services, name, password)) if passwords else None,
        # Gradio's page says "Incorrect Credentials" for a lockout too: the rule is told here.
        auth_message=(
            "Sign in with the name and password your ftapp admin gave you. After "
            f"{USER_LOCKOUT} wrong tries, a name is locked for {LOCKOUT.seconds // 60} minutes."
        ),
        # Every request passes the Host/Origin, session, page-session and file checks first.
        # /v1/ is the OpenAI-compatible API (ftapp/api.py), on the same port, keys only.
        app_kwargs={
            "middleware": [
                Middleware(
                    RequestGuard, services=services, bound_host=host, api=build_api(services)
                )
            ]
        },  # fmt: skip
        ssr_mode=False,  # a Node server in front would see the requests first
    )


def _sign_in(services: Services, name: str, password: str) -> bool:
    with services.db() as db:
        return verify_password(db, name, password)


def main(host: str | None = None, port: int | None = None, with_worker: bool = True) -> None:
    """Build everything from the environment and serve: `python app.py` and `ftapp serve`.
    A training worker starts beside the app unless with_worker is False or FTAPP_WORKER=0."""
    from ftapp.backup import BackupThread
    from ftapp.models.bundled import prepare_bundled_model
    from ftapp.training.supervisor import WorkerSupervisor

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: the vLLM health poll would fill the terminal.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    log.info("ftapp from %s", Path(__file__).resolve().parent.parent)
    try:
        services = Services.from_env()
        with services.db() as db:  # before anything starts: refuse an unsafe address first
            check_can_start(db, services.settings, host or services.settings.host)
        prepare_bundled_model(services.settings.models_dir)
        if services.settings.demo:
            from ftapp.demo import seed_demo

            with services.db() as db:
                log.info("demo: %s", seed_demo(db, services.settings, services.served_base))
    except FtappError as exc:  # a bad FTAPP_* setting, a missing model package, no users
        raise SystemExit(f"ftapp can't start: {exc}") from None
    worker = None
    if with_worker and os.environ.get("FTAPP_WORKER", "1") != "0":
        # Supervised: a worker that dies (killed, crashed) is started again.
        worker = WorkerSupervisor(services.settings)
        worker.start()
        log.info("training worker started (pid %d)", worker.pid)
    backups = None
    if services.settings.backup_minutes:
        backups = BackupThread(services.settings)
        backups.start()
    # SIGTERM (systemd, a container stop, a supervisor) shuts down like Ctrl-C: Gradio closes,
    # then the worker and the vLLM server are stopped below.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        # Start the engine now: vLLM takes tens of seconds on a CPU; the page shows progress.
        log.info("generation: %s", services.backend.status().detail)
        services.answer_generator.wake()  # evaluation sessions' answers, in the background
        launch(services, host, port)
    finally:
        if worker:
            worker.stop()
        if backups:
            backups.stop()
        if "answer_generator" in services.__dict__:
            services.answer_generator.stop()
        services.backend.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
