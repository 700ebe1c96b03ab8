"""The app on its own (FTAPP_BACKEND=vllm, as `make run` does where vLLM is installed): it
starts a vLLM server on loopback, answers through it, and stops it when the app is stopped."""

import re
import time

import httpx
import psutil
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.live_app import running_app

pytestmark = pytest.mark.slow


def vllm_servers() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "vllm.entrypoints.openai.api_server" in cmdline:
            found.append(process)
    return found


def test_the_app_starts_answers_through_and_stops_its_vllm_server(tmp_path, models_dir):
    before = {p.pid for p in vllm_servers()}  # the session's own server, if it runs
    home = tmp_path / "home"
    extra = {"FTAPP_BACKEND": "vllm", "FTAPP_WORKER": "0"}
    with running_app(home, models_dir, extra) as app:
        log = home / "logs" / "vllm.log"
        deadline = time.monotonic() + 300  # a guard against hanging, not a speed check
        port = None
        while time.monotonic() < deadline:
            text = log.read_text() if log.exists() else ""
            found = re.search(r"starting vLLM on port (\d+)", text)
            port = int(found.group(1)) if found else None
            try:
                if port and httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"the app's vLLM server never became healthy:\n{app.log_tail()}")
        [server] = [p for p in vllm_servers() if p.pid not in before]
        assert "--host 127.0.0.1" in " ".join(server.cmdline())

        # The app's supervisor notices the health check within a second; until then the
        # Playground says the engine is starting.
        client = Client(app.url, verbose=False)
        chat = None
        for _ in range(30):
            try:
                chat, _ = client.predict("base", "", 0, 1, 8, "", "Name a colour.",
                                         api_name="/chat")  # fmt: skip
                break
            except AppError as exc:
                assert "vLLM is not ready: starting" in str(exc)
                time.sleep(1)
        assert chat and chat[-1]["role"] == "assistant" and chat[-1]["content"]
    # Leaving the block sent SIGTERM to the app: it stopped its server on the way out.
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
