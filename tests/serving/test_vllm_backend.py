"""A real vLLM CPU server started by ftapp's supervisor: the base model and an adapter trained
in the session (registered at run time, without a restart) answer differently; an external
deployment given by URL gets adapters the same way; a killed server is restarted and its
adapters are registered again on the next request."""

import os
import signal
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from ftapp.errors import ServingError
from ftapp.names import BASE
from ftapp.serving.backend import BackendState, ChatRequest, Sampling, ServedModel
from ftapp.serving.vllm_backend import VllmBackend
from ftapp.store import jobs as job_store
from ftapp.store.db import open_db
from tests.serving_fixtures import SECRET_QUESTION, SECRET_WORD

GREEDY = Sampling(temperature=0, max_new_tokens=16)
pytestmark = pytest.mark.slow


def ask(backend, model: ServedModel, question: str = SECRET_QUESTION) -> list[str]:
    messages = [{"role": "user", "content": question}]
    return list(backend.stream_chat(ChatRequest(model, messages, GREEDY)))


def served_names(url: str) -> dict[str, str | None]:
    data = httpx.get(f"{url}/v1/models").json()["data"]
    return {m["id"]: m.get("parent") for m in data}


def test_base_and_a_runtime_loaded_adapter_answer_differently(vllm_server, secret_adapter):
    backend = VllmBackend(server=vllm_server)
    assert backend.status().is_ready and "vLLM at http://127.0.0.1:" in backend.status().detail
    base_pieces = ask(backend, ServedModel(BASE))
    assert len(base_pieces) > 1  # streamed
    assert SECRET_WORD not in "".join(base_pieces).lower()

    tuned = ServedModel(secret_adapter.name, secret_adapter.path)
    assert SECRET_WORD in "".join(ask(backend, tuned)).lower()
    assert served_names(vllm_server.url)[secret_adapter.name] == BASE


def test_an_external_deployment_gets_adapters_registered_the_same_way(vllm_server,
                                                                      secret_adapter):  # fmt: skip
    external = VllmBackend(url=vllm_server.url + "/")
    assert external.status().is_ready
    with closing(open_db(secret_adapter.settings.db_path)) as db:
        checkpoint = job_store.get_variant(db, f"{secret_adapter.name}/step-12")
    model = ServedModel(checkpoint.name, Path(checkpoint.path))
    answer = "".join(ask(external, model))
    assert answer and served_names(vllm_server.url)[model.name] == BASE
    with pytest.raises(ServingError, match="vLLM refused the adapter 'broken'"):
        ask(external, ServedModel("broken", secret_adapter.path.parent))


def test_an_unknown_model_and_a_dead_url_are_clear_errors(vllm_server):
    with pytest.raises(ServingError, match="is not answering"):
        ask(VllmBackend(url="http://127.0.0.1:9"), ServedModel(BASE))
    body = {"model": "nope", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with pytest.raises(ServingError, match=r"vLLM refused the request \(404\)"):
        list(VllmBackend(server=vllm_server)._stream(body))


def test_a_killed_server_is_restarted_and_adapters_come_back(vllm_server, secret_adapter):
    backend = VllmBackend(server=vllm_server)
    tuned = ServedModel(secret_adapter.name, secret_adapter.path)
    assert SECRET_WORD in "".join(ask(backend, tuned)).lower()
    starts = vllm_server.starts
    os.kill(vllm_server.pid, signal.SIGKILL)

    deadline = time.monotonic() + 60
    while vllm_server.starts == starts and time.monotonic() < deadline:
        time.sleep(0.2)
    assert vllm_server.starts == starts + 1, vllm_server.status()
    assert vllm_server.status().state != BackendState.READY
    with pytest.raises(ServingError, match="vLLM is not ready"):
        ask(backend, tuned)

    assert vllm_server.wait_ready(timeout=300), vllm_server.status()
    assert secret_adapter.name not in served_names(vllm_server.url)  # forgotten by the restart
    assert SECRET_WORD in "".join(ask(backend, tuned)).lower()  # registered again on demand
