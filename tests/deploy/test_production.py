"""Promotion to production on a real database: what answers as "production", the rollback
history (a stack: promotions push, rollbacks pop, nothing rewritten), refusals that change
nothing, the logged production chat, the client snippets and the `ftapp deploy` commands.

The slow tests ask real engines: the session's vLLM server (through Services with
FTAPP_VLLM_URL, and directly over HTTP as an outside client would) and the in-process backend,
with the session's adapter trained to answer "tangerine". The fast ones only need the registry
and an adapter folder's adapter_config.json (all `served_model` looks at), so they use a
stand-in folder and the echo backend.
"""

from __future__ import annotations

import argparse
import json
import shutil
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from ftapp.cli.deploy import add_deploy_commands
from ftapp.deploy.production import (
    NO_ENGINE_HERE,
    STOPPED,
    backend_endpoint,
    client_snippets,
    current_production,
    production_endpoint,
    promote,
    promote_to_production,
    promotion_history,
    roll_back_production,
    rollback,
    set_feedback,
    stream_production_chat,
    sync_production,
)
from ftapp.errors import Conflict, Forbidden, NotFound, ServingError, ValidationError
from ftapp.models.registry import bundled_base_model
from ftapp.names import BASE, PRODUCTION
from ftapp.services import Services
from ftapp.serving.backend import Sampling, ServedModel
from ftapp.serving.echo import EchoBackend
from ftapp.serving.setup import served_model
from ftapp.serving.vllm_backend import VllmBackend
from ftapp.store import jobs as job_store
from ftapp.store import production as store
from ftapp.store.db import open_db
from tests.serving_fixtures import (
    SECRET_QUESTION,
    SECRET_WORD,
    add_adapter_variant,
    home_with_adapter,
)

GREEDY = Sampling(temperature=0, top_p=1, max_new_tokens=16)
QUESTION = [{"role": "user", "content": SECRET_QUESTION}]


def rows(services: Services) -> tuple[int, int]:
    with services.db() as db:
        return db["promotions"].count, db["production_requests"].count


# --- promote and roll back -------------------------------------------------------------------


def test_promotion_decides_what_production_means_and_rollback_goes_back(stand_in):
    base = stand_in.served_base
    with stand_in.db() as db:
        first = promote(db, base, "secret", "ana", "first release")
        secret_path = Path(job_store.get_variant(db, "secret").path)
        assert served_model(db, base, PRODUCTION) == ServedModel(PRODUCTION, secret_path)
        promote(db, base, BASE, "ana")
        assert served_model(db, base, PRODUCTION) == ServedModel(BASE)
        back = rollback(db, base, "bo")
        assert (back.model, back.is_rollback, back.created_by) == ("secret", True, "bo")
        assert back.note == "rolled back from base"
        assert current_production(db) == back
        assert served_model(db, base, PRODUCTION) == ServedModel(PRODUCTION, secret_path)
        history = promotion_history(db)
    assert [(p.model, p.is_rollback) for p in history] == [
        ("secret", True), (BASE, False), ("secret", False)]  # fmt: skip
    assert history[-1] == first and first.note == "first release" and first.created_by == "ana"


def test_rollbacks_walk_back_through_the_promotions_until_the_first(stand_in):
    base = stand_in.served_base
    with stand_in.db() as db:
        for name in ("secret", "other", BASE, "other"):
            promote(db, base, name, "ana")
        assert [rollback(db, base, "ana").model for _ in range(3)] == [BASE, "other", "secret"]
        with pytest.raises(Conflict, match="nothing to roll back to: 'secret' was promoted first"):
            rollback(db, base, "ana")
        promote(db, base, "other", "ana")  # a new promotion can be rolled back again
        assert rollback(db, base, "ana").model == "secret"
    assert rows(stand_in) == (9, 0)


def test_refusals_say_why_and_change_nothing(stand_in, tmp_path):
    base = stand_in.served_base
    with stand_in.db() as db:
        with pytest.raises(ValidationError, match="nothing is in production yet: promote a model"):
            served_model(db, base, PRODUCTION)
        with pytest.raises(Conflict, match="nothing is in production yet"):
            rollback(db, base, "ana")
        with pytest.raises(NotFound, match="no model variant named 'nope'"):
            promote(db, base, "nope", "ana")
        with pytest.raises(ValidationError, match="'production' is the name"):
            promote(db, base, PRODUCTION, "ana")
        with pytest.raises(ValidationError, match="choose a model to promote"):
            promote(db, base, "  ", "ana")
        with pytest.raises(ValidationError, match="note is over 500 characters"):
            promote(db, base, "secret", "ana", "x" * 501)
        add_adapter_variant(stand_in.settings, "elsewhere", tmp_path / "adapters" / "secret",
                            base_model="Some-Other-Model")  # fmt: skip
        with pytest.raises(ValidationError, match="adapter for Some-Other-Model"):
            promote(db, base, "elsewhere", "ana")
        promote(db, base, "secret", "ana")
        with pytest.raises(Conflict, match="'secret' is already in production"):
            promote(db, base, "secret", "ana")
    assert rows(stand_in) == (1, 0)


def test_a_rollback_to_a_model_that_can_no_longer_answer_is_refused(stand_in, tmp_path):
    base = stand_in.served_base
    with stand_in.db() as db:
        promote(db, base, "other", "ana")
        promote(db, base, "secret", "ana")
        shutil.rmtree(tmp_path / "adapters" / "other")
        with pytest.raises(Conflict, match="can't roll back to 'other': .*folder .* is missing"):
            rollback(db, base, "ana")
        assert current_production(db).model == "secret"
    assert rows(stand_in) == (2, 0)


# --- the production chat -----------------------------------------------------------------------


class Clock:
    """A fake clock: each reading is 0.25 s after the one before."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.25
        return self.now


def ask_production(services: Services, backend, user: str = "ana", clock=None):
    return stream_production_chat(services.db, backend, services.served_base, QUESTION, GREEDY,
                                  user, clock=clock or Clock())  # fmt: skip


def test_a_production_reply_is_logged_with_latency_length_and_feedback(stand_in):
    with stand_in.db() as db:
        promotion = promote(db, stand_in.served_base, "secret", "ana")
    reply = ask_production(stand_in, EchoBackend())
    with stand_in.db() as db:  # written before the first piece, so the UI has the id at once
        assert store.get_request(db, reply.request_id).error == store.UNFINISHED
    answer = "".join(reply.pieces)
    assert answer == f"[{PRODUCTION}] {SECRET_QUESTION}"  # the echo backend names its model
    with stand_in.db() as db:
        logged = store.get_request(db, reply.request_id)
        assert (logged.model, logged.promotion_id, logged.answer, logged.error) == (
            "secret", promotion.id, answer, None)  # fmt: skip
        # Clock readings: the start, the first piece, the end.
        assert (logged.ttft_ms, logged.latency_ms) == (250, 500)
        assert logged.n_tokens == len(answer.split(" "))
        assert logged.messages == QUESTION and logged.created_by == "ana"

        assert set_feedback(db, reply.request_id, "ana", 1).feedback == 1
        rated = set_feedback(db, reply.request_id, "ana", -1)
        assert rated.feedback == -1 and rated.feedback_at is not None
        with pytest.raises(Forbidden, match="made by ana; only they can rate it"):
            set_feedback(db, reply.request_id, "bo", 1)
        with pytest.raises(ValidationError, match="feedback must be 1"):
            set_feedback(db, reply.request_id, "ana", 5)
        with pytest.raises(NotFound, match="no production request #999"):
            set_feedback(db, 999, "ana", 1)
        assert store.get_request(db, reply.request_id).feedback == -1
        cleared = set_feedback(db, reply.request_id, "ana", None)
        assert cleared.feedback is None and cleared.feedback_at is None


def test_a_stopped_or_failed_reply_is_logged_as_far_as_it_got(stand_in):
    with stand_in.db() as db:
        promote(db, stand_in.served_base, BASE, "ana")
    reply = ask_production(stand_in, EchoBackend())
    first = next(reply.pieces)
    reply.pieces.close()  # the Stop button
    failed = ask_production(stand_in, VllmBackend(url="http://127.0.0.1:9"))
    with pytest.raises(ServingError, match="not answering"):
        list(failed.pieces)
    with stand_in.db() as db:
        stopped = store.get_request(db, reply.request_id)
        assert (stopped.answer, stopped.error, stopped.n_tokens) == (first, STOPPED, 1)
        assert stopped.model == BASE and (stopped.ttft_ms, stopped.latency_ms) == (250, 500)
        broken = store.get_request(db, failed.request_id)
        assert "not answering" in broken.error and broken.answer == ""


def test_bad_production_requests_write_nothing(stand_in):
    with pytest.raises(ValidationError, match="nothing is in production yet"):
        ask_production(stand_in, EchoBackend())
    with stand_in.db() as db:
        promote(db, stand_in.served_base, "secret", "ana")
    with pytest.raises(ValidationError, match="last message must be a non-empty user message"):
        stream_production_chat(stand_in.db, EchoBackend(), stand_in.served_base,
                               [{"role": "user", "content": " "}], GREEDY, "ana")  # fmt: skip
    assert rows(stand_in) == (1, 0)


# --- how clients call it -----------------------------------------------------------------------


def test_the_endpoint_names_production_and_says_what_it_can_not_do(stand_in):
    with stand_in.db() as db:
        secret = promote(db, stand_in.served_base, "secret", "ana")
        base = promote(db, stand_in.served_base, BASE, "ana")
    on_vllm = production_endpoint("vllm", "http://10.0.0.5:8000/", secret)
    assert (on_vllm.url, on_vllm.model) == ("http://10.0.0.5:8000/v1", PRODUCTION)
    assert "curl http://10.0.0.5:8000/v1/chat/completions" in on_vllm.curl
    body = json.loads(on_vllm.curl.split("-d '")[1].rstrip("'"))
    assert body["model"] == PRODUCTION
    assert 'base_url="http://10.0.0.5:8000/v1"' in on_vllm.python
    assert 'model="production"' in on_vllm.python
    compile(on_vllm.python, "snippet", "exec")  # ready to run as it is

    own_server = production_endpoint("vllm", "http://127.0.0.1:4321", secret, own_server=True)
    assert "FTAPP_VLLM_PORT" in own_server.note
    base_promoted = production_endpoint("vllm", "http://h:1", base, base_name="my-base")
    assert base_promoted.model == "my-base" and "can't serve the base model" in base_promoted.note
    assert '"model": "my-base"' in base_promoted.curl
    in_process = production_endpoint("hf", None, secret)
    assert in_process.url is None and "only the app's Playground serves production" in (
        in_process.note)  # fmt: skip
    assert "FTAPP_VLLM_URL" in in_process.note
    assert production_endpoint("hf", None, base).model == PRODUCTION  # the app routes it
    assert client_snippets("http://x/v1", "m")[0].startswith("curl http://x/v1/chat/completions")


def promote_with(services: Services, model: str, note: str = ""):
    """What the Deploy tab's Promote button calls."""
    return promote_to_production(services.db, services.backend, services.served_base, model,
                                 "ana", note)  # fmt: skip


def roll_back_with(services: Services):
    return roll_back_production(services.db, services.backend, services.served_base, "ana")


def test_promote_and_roll_back_with_the_in_process_backends(stand_in):
    promotion, served = promote_with(stand_in, "secret", "why not")
    assert promotion.model == "secret" and "echo backend answers as 'production'" in served
    with stand_in.db() as db:
        assert promotion.note == "why not" and current_production(db) == promotion
    endpoint = backend_endpoint(stand_in.backend, promotion)
    assert endpoint.url is None and "only the app's Playground serves production" in endpoint.note
    promote_with(stand_in, BASE)
    promotion, served = roll_back_with(stand_in)
    assert promotion.model == "secret" and promotion.is_rollback
    assert "echo backend answers" in served
    assert rows(stand_in) == (3, 0)


def test_without_an_engine_here_the_promotion_is_stored_and_says_who_serves_it(stand_in):
    promotion, served = promote_to_production(stand_in.db, None, stand_in.served_base, "secret",
                                              "ana")  # fmt: skip
    assert served == NO_ENGINE_HERE and current_production_of(stand_in) == promotion
    with pytest.raises(Conflict, match="already in production"):
        promote_to_production(stand_in.db, None, stand_in.served_base, "secret", "ana")
    assert rows(stand_in) == (1, 0)


def current_production_of(services: Services):
    with services.db() as db:
        return current_production(db)


def test_a_vllm_server_that_is_not_answering_gets_production_when_it_is_ready(stand_in):
    """The promotion is made; the line says the engine will get it (on_ready registers it)."""
    down = VllmBackend(url="http://127.0.0.1:9")
    promotion, served = promote_to_production(stand_in.db, down, stand_in.served_base, "secret",
                                              "ana")  # fmt: skip
    assert promotion.model == "secret" and current_production_of(stand_in) == promotion
    assert served.startswith("vLLM will get it when it is ready (") and "not answering" in served
    assert sync_production(stand_in.db, down, stand_in.served_base) == served
    endpoint = backend_endpoint(down, promotion)  # a server that is down: still an answer
    assert (endpoint.url, endpoint.model) == ("http://127.0.0.1:9/v1", PRODUCTION)
    assert "FTAPP_VLLM_PORT" not in endpoint.note  # not a server ftapp starts


def test_every_backend_says_where_clients_call_it():
    from ftapp.serving.backend import BackendEndpoint
    from ftapp.serving.hf import HFBackend
    from ftapp.serving.vllm_server import VllmOptions, VllmServer

    assert EchoBackend().endpoint() == BackendEndpoint(None, BASE, False)
    assert HFBackend(Path("unused")).endpoint() == BackendEndpoint(None, BASE, False)
    assert VllmBackend(url="http://127.0.0.1:9/").endpoint() == BackendEndpoint(
        "http://127.0.0.1:9", BASE, False)  # fmt: skip
    server = VllmServer(VllmOptions(Path("unused"), Path("unused.log"), max_lora_rank=8))
    own = VllmBackend(server=server).endpoint()  # not started: nothing answers yet
    assert own.url == server.url and own.base_name == BASE and own.own_server
    for in_process in (EchoBackend(), HFBackend(Path("unused"))):
        in_process.register_alias(PRODUCTION, Path("unused"))  # resolved per request: no-op
        assert in_process.on_ready is None


# --- the `ftapp deploy` commands -----------------------------------------------------------------


def run_deploy(*args: str) -> int:
    parser = argparse.ArgumentParser(prog="ftapp")
    add_deploy_commands(parser.add_subparsers())
    parsed = parser.parse_args(["deploy", *args])
    return parsed.handler(parsed)


def test_deploy_commands(stand_in, monkeypatch, capsys):
    monkeypatch.setenv("FTAPP_HOME", str(stand_in.settings.home))
    monkeypatch.setenv("FTAPP_BACKEND", "echo")
    monkeypatch.delenv("FTAPP_VLLM_URL", raising=False)
    assert run_deploy("promote", "other", "--note", "try it") == 0
    assert "other is in production" in capsys.readouterr().out
    assert run_deploy("promote", "secret") == 0
    assert run_deploy("rollback") == 0
    assert "rolled back: other is in production again" in capsys.readouterr().out.splitlines()[-1]
    with pytest.raises(Conflict, match="already in production"):
        run_deploy("promote", "other")

    assert run_deploy("status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["current"]["model"] == "other" and status["current"]["is_rollback"]
    assert [p["model"] for p in status["history"]] == ["other", "secret", "other"]
    assert status["history"][-1]["note"] == "try it"
    assert status["endpoint"]["url"] is None and status["endpoint"]["model"] == PRODUCTION

    reply = ask_production(stand_in, EchoBackend())
    "".join(reply.pieces)
    assert run_deploy("monitor", "--bucket", "day", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["requests"], r["errors"]) for r in report["rows"]] == [("other", 1, 0)]
    assert report["drop"] is None
    assert run_deploy("monitor") == 0
    assert "no drop against the previous model" in capsys.readouterr().out


# --- real engines (slow) ---------------------------------------------------------------------


def ask(services: Services, model: str = PRODUCTION) -> str:
    return "".join(services.stream_chat(model, QUESTION, GREEDY)).lower()


def ask_vllm_directly(url: str) -> httpx.Response:
    """What a client outside the app gets when it names "production" at the vLLM URL."""
    body = {"model": PRODUCTION, "messages": QUESTION, "temperature": 0, "max_tokens": 16}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)


def registered(url: str) -> dict[str, dict]:
    return {m["id"]: m for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]}


@pytest.mark.slow
def test_on_vllm_promote_and_rollback_change_what_production_answers(
    vllm_server, secret_adapter, tmp_path, models_dir
):
    settings = home_with_adapter(tmp_path / "home", models_dir, secret_adapter)
    copy = shutil.copytree(secret_adapter.path, tmp_path / "secret-copy")
    add_adapter_variant(settings, "secret-copy", copy)
    services = Services(replace(settings, vllm_url=vllm_server.url))

    promote_with(services, BASE)
    assert PRODUCTION not in registered(vllm_server.url)  # vLLM can't alias the base model
    promote_with(services, "secret")
    # Registered at the promotion: a client outside the app gets it without the app asking.
    direct = ask_vllm_directly(vllm_server.url)
    assert direct.status_code == 200, direct.text
    assert SECRET_WORD in direct.json()["choices"][0]["message"]["content"].lower()
    assert registered(vllm_server.url)[PRODUCTION]["root"] == str(secret_adapter.path)
    assert SECRET_WORD in ask(services)

    promotion, served = roll_back_with(services)
    assert promotion.model == BASE and "nothing registered as 'production'" in served
    assert SECRET_WORD not in ask(services)
    assert ask_vllm_directly(vllm_server.url).status_code == 404
    assert PRODUCTION not in registered(vllm_server.url)

    promote_with(services, "secret")
    promote_with(services, "secret-copy")  # another folder: unloaded and loaded again
    assert registered(vllm_server.url)[PRODUCTION]["root"] == str(copy)
    assert SECRET_WORD in ask(services)
    roll_back_with(services)
    assert registered(vllm_server.url)[PRODUCTION]["root"] == str(secret_adapter.path)


@pytest.mark.slow
def test_a_vllm_server_that_becomes_ready_gets_production_registered(
    vllm_server, secret_adapter, tmp_path, models_dir
):
    """What happens after a restart: the server has forgotten the adapter; the first status
    poll that finds it ready registers production again, before any production request."""
    settings = home_with_adapter(tmp_path / "home", models_dir, secret_adapter)
    with closing(open_db(settings.db_path)) as db:  # as `ftapp deploy promote` would
        promote(db, bundled_base_model(settings.models_dir), "secret", "cli:ana")
    VllmBackend(url=vllm_server.url).unload_adapter(PRODUCTION)
    assert PRODUCTION not in registered(vllm_server.url)

    services = Services(replace(settings, vllm_url=vllm_server.url))
    assert services.backend.status().is_ready
    assert registered(vllm_server.url)[PRODUCTION]["root"] == str(secret_adapter.path)
    assert SECRET_WORD in ask_vllm_directly(vllm_server.url).json()["choices"][0]["message"][
        "content"].lower()  # fmt: skip


@pytest.mark.slow
def test_in_process_promote_and_rollback_change_what_production_answers(
    secret_adapter, tmp_path, models_dir
):
    settings = home_with_adapter(tmp_path / "home", models_dir, secret_adapter)
    services = Services(replace(settings, backend="hf", serve_threads=1))
    try:
        promote_with(services, "secret")
        assert SECRET_WORD in ask(services)
        promote_with(services, BASE)
        assert SECRET_WORD not in ask(services)
        roll_back_with(services)
        reply = stream_production_chat(services.db, services.backend, services.served_base,
                                       QUESTION, GREEDY, "ana")  # fmt: skip
        answer = "".join(reply.pieces)
        assert SECRET_WORD in answer.lower()
        with services.db() as db:
            logged = store.get_request(db, reply.request_id)
        assert (logged.model, logged.answer, logged.error) == ("secret", answer, None)
        assert logged.latency_ms > 0 and logged.n_tokens > 0
    finally:
        services.backend.close()
