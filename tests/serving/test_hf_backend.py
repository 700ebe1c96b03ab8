"""The in-process fallback on the real bundled model and an adapter trained in the session:
the adapter changes the answer, the base answer comes back with adapters switched off,
replies stream in pieces, a stopped reply frees the engine, bad adapters are refused."""

import threading

import pytest

from ftapp.errors import ServingError
from ftapp.names import BASE
from ftapp.serving.backend import ChatRequest, Sampling, ServedModel
from ftapp.serving.hf import HFBackend
from tests.serving_fixtures import SECRET_QUESTION, SECRET_WORD

GREEDY = Sampling(temperature=0, max_new_tokens=16)


def ask(backend, model: ServedModel, question: str = SECRET_QUESTION, sampling=GREEDY) -> str:
    messages = [{"role": "user", "content": question}]
    return "".join(backend.stream_chat(ChatRequest(model, messages, sampling)))


@pytest.fixture(scope="module")
def hf(bundled_model_dir):
    backend = HFBackend(bundled_model_dir, threads=1)
    yield backend
    backend.close()


@pytest.mark.slow
def test_the_adapter_changes_the_answer_and_the_base_comes_back(hf, secret_adapter):
    tuned = ServedModel(secret_adapter.name, secret_adapter.path)
    before = ask(hf, ServedModel(BASE))
    assert before and SECRET_WORD not in before.lower()
    assert SECRET_WORD in ask(hf, tuned).lower()
    # Switching back turns the adapter off: the same greedy answer as before it was loaded.
    assert ask(hf, ServedModel(BASE)) == before
    assert hf.status().is_ready and "transformers in-process" in hf.status().detail


@pytest.mark.slow
def test_replies_stream_in_pieces_and_a_seed_repeats_a_sampled_answer(hf):
    messages = [{"role": "user", "content": "Write a sentence about the sea."}]
    request = ChatRequest(ServedModel(BASE), messages, Sampling(max_new_tokens=24, seed=7))
    pieces = list(hf.stream_chat(request))
    assert len(pieces) > 3
    assert "".join(hf.stream_chat(request)) == "".join(pieces)


@pytest.mark.slow
def test_closing_a_reply_early_stops_generation_and_frees_the_engine(hf):
    stream = hf.stream_chat(ChatRequest(ServedModel(BASE), [{"role": "user", "content": "Count"}],
                                        Sampling(max_new_tokens=500)))  # fmt: skip
    next(stream)
    stream.close()  # what Gradio does when Stop is pressed
    assert not any(t.name == "hf-generate" for t in threading.enumerate())
    assert ask(hf, ServedModel(BASE), sampling=Sampling(temperature=0, max_new_tokens=4))


def test_an_adapter_folder_without_adapter_files_is_refused(bundled_model_dir, tmp_path):
    backend = HFBackend(bundled_model_dir, threads=1)
    with pytest.raises(ServingError, match="adapter_config.json is missing"):
        ask(backend, ServedModel("broken", tmp_path))
