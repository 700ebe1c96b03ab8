"""The Deploy tab and the Playground's production mode against the real app in a subprocess
(gradio_client calls what the page's buttons call), generating through the session's vLLM
server (FTAPP_VLLM_URL): promote, the production chat answers as promoted and is logged with
its latency, the thumbs are stored, the monitoring shows it, a client calling vLLM directly
gets "production" too, and one click rolls back. A merge is queued as an export job that the
app's worker runs while the page polls its row."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from ftapp.names import PRODUCTION
from tests.gradio_events import call_event, dependencies, signed_in_client
from tests.live_app import LiveApp, running_app
from tests.serving_fixtures import SECRET_QUESTION, SECRET_WORD, home_with_adapter

pytestmark = pytest.mark.slow
STATUS_VIEW = ("model", "current", "history", "endpoint", "curl", "python")
MONITOR_VIEW = ("drop", "table", "plot", "traffic")


@pytest.fixture(scope="module")
def app(tmp_path_factory, secret_adapter, vllm_server, models_dir: Path):
    home = home_with_adapter(tmp_path_factory.mktemp("deploy") / "home", models_dir,
                             secret_adapter).home  # fmt: skip
    # The app's own worker runs the export jobs the Deploy tab queues.
    extra = {"FTAPP_VLLM_URL": vllm_server.url, "FTAPP_WORKER": "1"}
    with running_app(home, models_dir, extra) as live:
        yield live


def production_chat(client: Client, message: str = SECRET_QUESTION) -> str:
    """One production turn of the client's conversation; the reply's text."""
    chat, _ = client.predict(PRODUCTION, "", 0, 1, 16, None, message, api_name="/chat")
    content = chat[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def model_choices(app: LiveApp) -> list[str]:
    """The Playground's model list (the API page shows only the chosen value)."""
    http = signed_in_client(app.url)
    event = next(d for d in dependencies(http) if d["api_name"] == "list_models")
    result = call_event(http, event["id"], ["base"])
    assert result.success, result.error
    return [value for _, value in result.output["data"][0]["choices"]]


def status(client: Client) -> dict:
    return dict(zip(STATUS_VIEW, client.predict(None, api_name="/deploy_status"), strict=True))


def test_promote_chat_rate_monitor_and_roll_back(app: LiveApp, vllm_server, secret_adapter):
    admin = Client(app.url, verbose=False)
    before = status(admin)
    assert PRODUCTION not in model_choices(app)
    assert "nothing yet" in before["current"]
    assert f"`{app.url}v1`" in before["endpoint"]  # the app's own API, keys needed
    assert f"The engine behind it: `{vllm_server.url}/v1`" in before["endpoint"]
    assert f"curl {app.url}v1/chat/completions" in before["curl"]
    assert "Authorization: Bearer $FTAPP_API_KEY" in before["curl"]
    with pytest.raises(AppError, match="nothing is in production yet"):
        production_chat(Client(app.url, verbose=False))
    with pytest.raises(AppError, match="nothing is in production yet, so there is nothing"):
        admin.predict(None, api_name="/deploy_rollback")

    admin.predict("base", "", "", api_name="/deploy_promote")  # no override reason needed
    outcome, note, _, *shown = admin.predict(secret_adapter.name, "first release", "",
                                             api_name="/deploy_promote")  # fmt: skip
    assert "Promoted **secret**" in outcome and f"serves 'secret' as '{PRODUCTION}'" in outcome
    assert f"vLLM at {vllm_server.url} serves" in outcome  # the URL as it is, no Markdown escapes
    assert note == ""  # emptied for the next promotion
    promoted = dict(zip(STATUS_VIEW, shown, strict=True))
    assert "`secret` since" in promoted["current"] and "(promotion by admin)" in promoted["current"]
    assert [row[2:5] for row in promoted["history"]["data"]] == [
        ["promote", "secret", "admin"], ["promote", "base", "admin"]]  # fmt: skip

    # A client of the vLLM URL gets the promoted adapter: the app registered it at once.
    body = {"model": PRODUCTION, "temperature": 0, "max_tokens": 16,
            "messages": [{"role": "user", "content": SECRET_QUESTION}]}  # fmt: skip
    direct = httpx.post(f"{vllm_server.url}/v1/chat/completions", json=body, timeout=120)
    assert SECRET_WORD in direct.json()["choices"][0]["message"]["content"].lower()

    assert model_choices(app)[:2] == ["base", PRODUCTION]
    chat = Client(app.url, verbose=False)  # a Playground page in production mode
    assert SECRET_WORD in production_chat(chat).lower()
    (logged,) = app.query("SELECT * FROM production_requests")
    assert logged["model"] == "secret" and logged["error"] is None
    assert SECRET_WORD in logged["answer"].lower() and logged["created_by"] == "admin"
    assert logged["latency_ms"] > 0 and logged["n_tokens"] > 1
    assert "Good answer" in chat.predict(api_name="/rate_good")
    assert app.query("SELECT feedback FROM production_requests")[0]["feedback"] == 1
    assert "Bad answer" in chat.predict(api_name="/rate_bad")
    assert app.query("SELECT feedback FROM production_requests")[0]["feedback"] == -1
    with pytest.raises(AppError, match="no production reply to rate"):
        Client(app.url, verbose=False).predict(api_name="/rate_good")

    monitored = dict(zip(MONITOR_VIEW, admin.predict("day", "", True, api_name="/deploy_monitor"),
                         strict=True))  # fmt: skip
    (row,) = monitored["table"]["data"]
    assert row[1:4] == ["secret", 1, 0] and row[5] == logged["latency_ms"]
    assert row[8:10] == ["100%", "0%"]  # rated: 1 of 1; thumbs up: none
    assert row[-1] == "playground" and row[-2] is not None  # per key: the Playground's chat
    assert monitored["drop"] == ""
    assert "Traffic drift: not enough requests yet" in monitored["traffic"]

    outcome, *shown = admin.predict(None, api_name="/deploy_rollback")
    assert "Rolled back to **base**" in outcome
    current = dict(zip(STATUS_VIEW, shown, strict=True))["current"]
    assert "`base` since" in current and "(rollback by admin)" in current
    assert SECRET_WORD not in production_chat(Client(app.url, verbose=False)).lower()
    latest = app.query("SELECT * FROM production_requests ORDER BY id DESC LIMIT 1")[0]
    assert latest["model"] == "base" and latest["error"] is None
    assert httpx.post(f"{vllm_server.url}/v1/chat/completions", json=body,
                      timeout=120).status_code == 404  # fmt: skip


def finished_export(client: Client, job_id: int, timeout: float = 600) -> tuple[str, str]:
    """Poll the export job's row as the section's timer does, until it ended: its line, log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line, log = client.predict(job_id, api_name="/export_status")
        if not line.endswith((": queued", ": running")):
            return line, log
        time.sleep(1)
    pytest.fail(f"export job #{job_id} did not end: {line}")


def test_merge_and_push_are_jobs_the_worker_runs_and_the_page_follows(app: LiveApp, tmp_path):
    admin = Client(app.url, verbose=False)
    job_id, queued, _ = admin.predict("secret", api_name="/export_merge")
    assert queued.replace("\\", "").startswith(f"export job #{job_id}, merge of secret: ")
    line, log = finished_export(admin, job_id)
    merged = app.home / "exports" / "secret-merged"
    assert str(merged) in line.replace("\\", "") and line.startswith("merged secret into")
    assert "merging secret" in log
    (row,) = app.query("SELECT status, result_path, created_by FROM export_jobs")
    assert row == {"status": "succeeded", "result_path": str(merged), "created_by": "admin"}
    assert (merged / "config.json").is_file() and not (merged / "adapter_config.json").exists()
    assert list(merged.glob("*.safetensors"))
    rows = app.query("SELECT model, kind, target, created_by FROM exports")
    assert rows == [{"model": "secret", "kind": "merged", "target": str(merged),
                     "created_by": "admin"}]  # fmt: skip
    # A second merge into the same folder, and a push to a repository name that can't exist,
    # are refused when queued: no job, nothing uploaded.
    with pytest.raises(AppError, match="not empty|exists"):
        admin.predict("secret", api_name="/export_merge")
    with pytest.raises(AppError, match="repo"):
        admin.predict("secret", "not a repo", "", False, True, api_name="/export_push")
    assert len(app.query("SELECT * FROM exports")) == 1
    assert len(app.query("SELECT * FROM export_jobs")) == 1
    listed = admin.predict("secret", api_name="/export_list")
    assert [row[1] for row in listed["data"]] == ["merged"]
