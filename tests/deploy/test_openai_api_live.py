"""The app's OpenAI-compatible API against the real app in a subprocess, generating through
the session's vLLM server with the secret adapter in production: the real `openai` client
gets the same greedy answer as the Playground's production chat, streamed or not, every call
logged with its key; refused without a key, with a revoked one, for a model the key may not
call, and over its rate; feedback stored against its request. Keys open the API only, and a
sign-in opens nothing there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
from gradio_client import Client

from ftapp.api import ROUTES
from ftapp.auth import add_user
from ftapp.deploy.production import promote
from ftapp.models.registry import bundled_base_model
from ftapp.names import PRODUCTION
from ftapp.store.db import open_db
from tests.gradio_events import signed_in_client
from tests.live_app import REPO, LiveApp, running_app
from tests.serving_fixtures import SECRET_QUESTION, SECRET_WORD, home_with_adapter

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def app(tmp_path_factory, secret_adapter, vllm_server, models_dir: Path):
    settings = home_with_adapter(tmp_path_factory.mktemp("api") / "home", models_dir,
                                 secret_adapter)  # fmt: skip
    db = open_db(settings.db_path)
    try:
        add_user(db, "alice", "admin", PASSWORD, "test")
        promote(db, bundled_base_model(settings.models_dir), secret_adapter.name, "alice")
    finally:
        db.close()
    extra = {"FTAPP_VLLM_URL": vllm_server.url, "FTAPP_WORKER": "0"}
    with running_app(settings.home, models_dir, extra) as live:
        yield live


def ftapp_keys(app: LiveApp, *args: str) -> subprocess.CompletedProcess:
    env = {"FTAPP_HOME": str(app.home), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "ftapp.cli", "keys", *args], cwd=REPO,
                          env=env, capture_output=True, text=True)  # fmt: skip


def new_key(app: LiveApp, name: str, *args: str) -> str:
    made = ftapp_keys(app, "create", name, *args)
    assert made.returncode == 0, made.stderr
    return made.stdout.splitlines()[0]


def client(app: LiveApp, key: str | None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{app.url}v1", api_key=key or "none", max_retries=0)


ASK = [{"role": "user", "content": SECRET_QUESTION}]


def test_the_openai_client_gets_production_as_the_playground_does(app: LiveApp):
    secret = new_key(app, "svc")
    api = client(app, secret)
    assert [m.id for m in api.models.list().data] == [PRODUCTION]
    answer = api.chat.completions.create(model=PRODUCTION, messages=ASK, temperature=0,
                                         max_tokens=16)  # fmt: skip
    text = answer.choices[0].message.content
    assert SECRET_WORD in text.lower()
    streamed = api.chat.completions.create(model=PRODUCTION, messages=ASK, temperature=0,
                                           max_tokens=16, stream=True,
                                           stream_options={"include_usage": True})  # fmt: skip
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens > 0
    playground = Client(app.url, auth=("alice", PASSWORD), verbose=False)
    chat, _ = playground.predict(PRODUCTION, "", 0, 1, 16, None, SECRET_QUESTION,
                                 api_name="/chat")  # fmt: skip
    shown = chat[-1]["content"]
    shown = shown if isinstance(shown, str) else shown[0]["text"]
    assert shown.split("</span>", 1)[-1].strip() == text  # after the reply's model label
    rows = app.query("SELECT * FROM production_requests WHERE key_name = 'svc' ORDER BY id")
    assert len(rows) == 2 and {r["model"] for r in rows} == {"secret"}
    assert all(r["error"] is None and r["ttft_ms"] is not None for r in rows)
    assert rows[0]["prompt_tokens"] == answer.usage.prompt_tokens > 0
    assert answer.id == f"chatcmpl-{rows[0]['id']}"
    assert rows[0]["created_by"] == "key:svc"
    # For privacy an API call's prompt and answer are not kept (FTAPP_API_LOG_TEXTS is off);
    # the Playground's production chat, an admin's own, keeps its text.
    assert all((r["messages_json"], r["answer"], r["text_kept"]) == ("[]", "", 0) for r in rows)
    (typed,) = app.query("SELECT answer, text_kept FROM production_requests "
                         "WHERE key_name IS NULL")  # fmt: skip
    assert typed["text_kept"] == 1 and typed["answer"] == text


def test_refusals_have_openais_shape(app: LiveApp):
    with pytest.raises(openai.AuthenticationError, match="no API key|not valid"):
        client(app, None).models.list()
    gone = new_key(app, "gone")
    assert ftapp_keys(app, "revoke", "gone").returncode == 0
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        client(app, gone).chat.completions.create(model=PRODUCTION, messages=ASK)
    narrow = new_key(app, "narrow")
    with pytest.raises(openai.AuthenticationError, match="may not call model 'base'"):
        client(app, narrow).chat.completions.create(model="base", messages=ASK)
    with pytest.raises(openai.BadRequestError, match="stop is not supported"):
        client(app, narrow).chat.completions.create(model=PRODUCTION, messages=ASK, stop=["x"])
    with pytest.raises(openai.BadRequestError, match="message 1: role"):
        client(app, narrow).chat.completions.create(
            model=PRODUCTION, messages=[{"role": "robot", "content": "hi"}]
        )
    slow = new_key(app, "slow", "--rate", "2")
    for _ in range(2):
        client(app, slow).models.list()
    with pytest.raises(openai.RateLimitError) as over:
        client(app, slow).models.list()
    assert int(over.value.response.headers["retry-after"]) >= 1
    refused = app.query("SELECT COUNT(*) AS n FROM production_requests WHERE key_name IN "
                        "('gone', 'narrow', 'slow')")  # fmt: skip
    assert refused == [{"n": 0}]  # nothing refused was served or logged


def test_feedback_is_stored_against_its_request(app: LiveApp):
    mine, other = new_key(app, "rater"), new_key(app, "stranger")
    answer = client(app, mine).chat.completions.create(model=PRODUCTION, messages=ASK,
                                                       max_tokens=8)  # fmt: skip
    http = httpx.Client(base_url=f"{app.url}v1", timeout=60)
    rated = http.post("feedback", json={"request_id": answer.id, "rating": "bad",
                                        "comment": "no secret"},
                      headers={"Authorization": f"Bearer {mine}"})  # fmt: skip
    assert rated.status_code == 200, rated.text
    assert rated.json() == {"request_id": answer.id, "rating": -1, "comment": "no secret"}
    stolen = http.post("feedback", json={"request_id": answer.id, "rating": "good"},
                       headers={"Authorization": f"Bearer {other}"})  # fmt: skip
    assert stolen.status_code == 403 and stolen.json()["error"]["type"] == "permission_error"
    bad = http.post("feedback", json={"request_id": answer.id, "rating": "meh"},
                    headers={"Authorization": f"Bearer {mine}"})  # fmt: skip
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rating"
    (row,) = app.query("SELECT feedback, feedback_comment FROM production_requests WHERE id = ?",
                       [int(answer.id.removeprefix("chatcmpl-"))])  # fmt: skip
    assert row == {"feedback": -1, "feedback_comment": "no secret"}


def test_a_sign_in_opens_no_api_and_a_key_opens_no_page(app: LiveApp):
    key = new_key(app, "pages")
    alice = signed_in_client(app.url, "alice", PASSWORD)
    assert alice.get("config").status_code == 200  # the sign-in works on the pages
    for method, path in ROUTES:  # and opens nothing under /v1; nor does no key
        for caller in (alice, httpx.Client(base_url=app.url, timeout=60)):
            answer = caller.request(method, path.lstrip("/"), json={"model": PRODUCTION})
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "invalid_api_key"
    visitor = httpx.Client(base_url=app.url, timeout=60,
                           headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert visitor.get("config").status_code == 401
    joined = visitor.post("gradio_api/queue/join", json={"data": [], "fn_index": 0,
                                                         "session_hash": "k1"})  # fmt: skip
    assert joined.status_code == 401


def test_the_deploy_tab_makes_shows_and_revokes_keys(app: LiveApp):
    admin = Client(app.url, auth=("alice", PASSWORD), verbose=False)
    made, name, table, _ = admin.predict("tab-key", "production", None, api_name="/keys_create")
    secret = made.split("`")[1]
    assert secret.startswith("ftk-") and name == ""
    assert ["tab-key", f"{secret[:10]}…", "production"] in [row[:3] for row in table["data"]]
    assert [m.id for m in client(app, secret).models.list().data] == [PRODUCTION]
    status = admin.predict(None, api_name="/deploy_status")
    assert f"`{app.url}v1`" in status[3] and "$FTAPP_API_KEY" in status[4]
    revoked, table, _ = admin.predict("tab-key", api_name="/keys_revoke")
    assert "is revoked" in revoked
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        client(app, secret).models.list()
    with pytest.raises(Exception, match="less than minimum value 0"):  # Gradio checks it
        admin.predict("bad-rate", "production", -1, api_name="/keys_create")
    assert app.query("SELECT COUNT(*) AS n FROM api_keys WHERE name = 'bad-rate'") == [{"n": 0}]


def test_a_canary_release_from_the_deploy_tab(app: LiveApp):
    admin = Client(app.url, auth=("alice", PASSWORD), verbose=False)
    _, status, _, _ = admin.predict("base", "50%", api_name="/canary_start")
    assert "answers 50% of production beside **secret**" in status
    names = [f"canary-{i}" for i in range(6)]
    for name in names:
        api = client(app, new_key(app, name))
        for _ in range(2):
            api.chat.completions.create(model=PRODUCTION, messages=ASK, max_tokens=4)
    rows = app.query("SELECT key_name, model, canary_id FROM production_requests "
                     "WHERE key_name LIKE 'canary-%'")  # fmt: skip
    by_key: dict[str, set] = {}
    for row in rows:
        by_key.setdefault(row["key_name"], set()).add(row["model"])
    assert all(len(models) == 1 for models in by_key.values())  # one client, one model
    assert set().union(*by_key.values()) <= {"base", "secret"}
    assert all(row["canary_id"] is not None for row in rows)
    _, status, _, history = admin.predict("not yet", api_name="/canary_rollback")
    assert "No canary is running" in status
    assert history["data"][0][7:] == ["rolled back", "not yet"]
