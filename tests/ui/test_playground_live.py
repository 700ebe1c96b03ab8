"""The Playground's API against the real app, on the home where the session's adapter was
trained: once generating through the session's vLLM server (given by FTAPP_VLLM_URL, so the
app registers the adapter itself), once in-process (FTAPP_BACKEND=hf). The adapter's answer
differs from the base model's in both; replies stream; bad input is refused by name."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from ftapp.deploy.production import current_production, promote
from ftapp.models.registry import bundled_base_model
from ftapp.names import PRODUCTION
from ftapp.store.db import open_db
from tests.live_app import running_app
from tests.serving_fixtures import SECRET_QUESTION, SECRET_WORD

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["vllm", "hf"])
def playground(request, secret_adapter, models_dir: Path):
    if request.param == "vllm":
        server = request.getfixturevalue("vllm_server")
        extra = {"FTAPP_VLLM_URL": server.url}
    else:
        extra = {"FTAPP_BACKEND": "hf", "FTAPP_SERVE_THREADS": "1"}
    extra["FTAPP_WORKER"] = "0"
    with running_app(secret_adapter.settings.home, models_dir, extra) as live:
        yield request.param, live.url


def new_chat(url: str) -> Client:
    """A new browser session: its own, empty conversation."""
    return Client(url, verbose=False)


def say(client: Client, model: str, message: str = SECRET_QUESTION, **sampling) -> list:
    """One turn of the session's conversation; the whole conversation afterwards."""
    values = {"temperature": 0, "top_p": 1, "max_new_tokens": 16, "seed": None, **sampling}
    chat, cleared = client.predict(
        model, "", values["temperature"], values["top_p"], values["max_new_tokens"],
        values["seed"], message, api_name="/chat",
    )  # fmt: skip
    assert cleared == ""  # the message box is emptied for the next turn
    return chat


def ask(url: str, model: str, message: str = SECRET_QUESTION, **sampling) -> str:
    """The answer to one message in a new conversation."""
    chat = say(new_chat(url), model, message, **sampling)
    assert [m["role"] for m in chat] == ["user", "assistant"]
    return text_of(chat[-1]["content"])


def text_of(content) -> str:
    """A Chatbot message's text (the client hands back a list of typed parts)."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def test_the_adapter_answers_as_trained_and_the_base_does_not(playground, secret_adapter):
    backend, url = playground
    assert SECRET_WORD not in ask(url, "base").lower()
    assert SECRET_WORD in ask(url, secret_adapter.name).lower(), backend


def test_a_conversation_goes_on_over_several_turns(playground, secret_adapter):
    _, url = playground
    client = new_chat(url)
    first = say(client, secret_adapter.name)
    second = say(client, secret_adapter.name, "Say it again.")
    assert [m["role"] for m in second] == ["user", "assistant", "user", "assistant"]
    assert second[:2] == first and text_of(second[2]["content"]) == "Say it again."


def test_replies_stream_into_the_conversation(playground):
    _, url = playground
    job = new_chat(url).submit("base", "Answer in one sentence.", 0, 1, 24, None,
                        "Describe the sea.", api_name="/chat")  # fmt: skip
    job.result()
    updates = [chat for chat, _ in job.outputs()]
    replies = [text_of(chat[-1]["content"]) for chat in updates
               if chat[-1]["role"] == "assistant"]  # fmt: skip
    assert len(replies) > 2 and replies[-1].startswith(replies[1])


def test_each_reply_names_its_model(playground, secret_adapter):
    _, url = playground
    chat = say(new_chat(url), secret_adapter.name)
    assert text_of(chat[1]["content"]).startswith(
        f'<span class="ft-reply-model">{secret_adapter.name}</span>'
    )
    assert "ft-reply-model" not in text_of(chat[0]["content"])  # the user's turn: no label


def compare(client: Client, models: list[str], message: str, max_new_tokens: int = 16):
    """One turn of a side-by-side compare: the four panes (hidden ones empty), the message box."""
    *panes, cleared = client.predict(models, "", 0, 1, max_new_tokens, "", message,
                                     api_name="/compare")  # fmt: skip
    assert cleared == ""
    # A pane comes back as an update of its label, visibility and value: the value is the chat.
    return [pane["value"] if isinstance(pane, dict) else pane for pane in panes]


def test_compare_side_by_side_with_follow_ups(playground, secret_adapter):
    _, url = playground
    client = new_chat(url)
    base, tuned, hidden, _ = compare(client, ["base", secret_adapter.name], SECRET_QUESTION)
    assert hidden == []
    assert SECRET_WORD not in text_of(base[1]["content"]).lower()
    assert SECRET_WORD in text_of(tuned[1]["content"]).lower()
    assert 'class="ft-reply-model">base<' in text_of(base[1]["content"])
    assert f'class="ft-reply-model">{secret_adapter.name}<' in text_of(tuned[1]["content"])
    # A follow-up goes to each model, after its own answer.
    base_2, tuned_2, _, _ = compare(client, ["base", secret_adapter.name], "Say it again.")
    assert base_2[:2] == base and tuned_2[:2] == tuned
    assert [text_of(m["content"]) for m in (base_2[2], tuned_2[2])] == ["Say it again."] * 2
    assert len(base_2) == len(tuned_2) == 4
    with pytest.raises(AppError, match="choose 2 to 4 different models to compare"):
        compare(client, ["base"], "hi")
    with pytest.raises(AppError, match="no model variant named 'nope'"):
        compare(new_chat(url), ["base", "nope"], "hi")


def test_bad_settings_and_unknown_models_are_refused_by_name(playground):
    _, url = playground
    with pytest.raises(AppError, match="greater than maximum value 2"):  # Gradio's own check
        ask(url, "base", temperature=5)
    with pytest.raises(AppError, match="seed must be at least 0, got -1"):
        ask(url, "base", seed=-1)
    with pytest.raises(AppError, match="no model variant named 'nope'"):
        ask(url, "nope")
    with pytest.raises(AppError, match="last message must be a non-empty user message"):
        ask(url, "base", message="   ")


def test_production_mode_answers_as_promoted_logs_and_rates(playground, secret_adapter):
    """Promoted from outside the app (as `ftapp deploy promote` does): the app's next
    production request serves it, on either backend, and the reply is logged and rated."""
    backend, url = playground
    settings = secret_adapter.settings
    with closing(open_db(settings.db_path)) as db:  # the module's two apps share this home
        current = current_production(db)
        if current is None or current.model != secret_adapter.name:
            promote(db, bundled_base_model(settings.models_dir), secret_adapter.name, "tester")
    client = new_chat(url)
    chat = say(client, PRODUCTION)
    assert SECRET_WORD in text_of(chat[-1]["content"]).lower(), backend
    assert "Good answer" in client.predict(api_name="/rate_good")
    with closing(open_db(settings.db_path)) as db:
        logged = next(db.query("SELECT * FROM production_requests ORDER BY id DESC LIMIT 1"))
    assert (logged["model"], logged["error"], logged["feedback"]) == (secret_adapter.name, None, 1)
    assert SECRET_WORD in logged["answer"].lower() and logged["latency_ms"] > 0
