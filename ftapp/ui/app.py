"""The whole web app: tabs, keyboard shortcuts, and launching it."""

from __future__ import annotations

import logging
import os
import signal

import gradio as gr

from ftapp.errors import FtappError
from ftapp.services import Services
from ftapp.ui.arena_tab import build_arena_tab
from ftapp.ui.data_tab import build_data_tab
from ftapp.ui.leaderboard_tab import build_leaderboard_tab
from ftapp.ui.playground_tab import build_playground_tab
from ftapp.ui.train_tab import build_train_tab

log = logging.getLogger(__name__)

# Keyboard shortcuts, ignored while typing. Data review: a accept, r reject, j or → next,
# k or ← previous. Arena: 1 A better, 2 B better, 3 tie, 4 both bad, n next battle. Each key
# clicks the first of its buttons that is visible (one per Arena mode).
SHORTCUTS_JS = """
<script>
document.addEventListener('keydown', (event) => {
  const target = event.target;
  const typing = target && (target.isContentEditable ||
    ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  const ids = {a: ['ft-accept'], r: ['ft-reject'], j: ['ft-next'], ArrowRight: ['ft-next'],
               k: ['ft-prev'], ArrowLeft: ['ft-prev'],
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


def build_app(services: Services) -> gr.Blocks:
    with gr.Blocks(title="ftapp") as app:
        gr.Markdown("# ftapp\nFine-tune a language model on your own examples.")
        with gr.Tabs():
            with gr.Tab("Data", id="data"):
                build_data_tab(services)
            with gr.Tab("Train", id="train"):
                train = build_train_tab(services)
            with gr.Tab("Playground", id="playground"):
                playground = build_playground_tab(services)
            with gr.Tab("Arena", id="arena"):
                arena = build_arena_tab(services)
            with gr.Tab("Leaderboard", id="leaderboard"):
                board = build_leaderboard_tab(services)
        # Reopening the page picks up where things are: versions, models, the latest job,
        # the engine's state, sessions and the leaderboard.
        for handler, inputs, outputs in [train["load"], *playground["load"], *arena["load"],
                                         board]:  # fmt: skip
            app.load(handler, inputs, outputs, api_name=False)
    return app


def launch(services: Services, host: str | None = None, port: int | None = None) -> None:
    settings = services.settings
    host = host or settings.host
    port = port or settings.port
    app = build_app(services)
    print(f"ftapp is running at http://{host}:{port}  (data in {settings.home})", flush=True)
    app.queue(default_concurrency_limit=8).launch(
        server_name=host,
        server_port=port,
        max_file_size=f"{settings.max_upload_mb}mb",
        head=SHORTCUTS_JS,
        show_error=True,
        footer_links=["api"],
    )


def main(host: str | None = None, port: int | None = None, with_worker: bool = True) -> None:
    """Build everything from the environment and serve: `python app.py` and `ftapp serve`.
    A training worker starts beside the app unless with_worker is False or FTAPP_WORKER=0."""
    from ftapp.models.bundled import prepare_bundled_model
    from ftapp.training.worker import start_worker_process, stop_worker_process

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: the vLLM health poll would fill the terminal.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        services = Services.from_env()
        prepare_bundled_model(services.settings.models_dir)
    except FtappError as exc:  # a bad FTAPP_* setting, a missing model package
        raise SystemExit(f"ftapp can't start: {exc}") from None
    worker = None
    if with_worker and os.environ.get("FTAPP_WORKER", "1") != "0":
        worker = start_worker_process(services.settings)
        log.info("training worker started (pid %d)", worker.pid)
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
            stop_worker_process(worker)
        if "answer_generator" in services.__dict__:
            services.answer_generator.stop()
        services.backend.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
