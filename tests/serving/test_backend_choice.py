"""The serving core without an engine: settings, request checks, which backend is chosen and
why, what a model name means, and the echo backend the fast tests use."""

import json
import os
import tempfile
from pathlib import Path

import pytest

from ftapp.errors import ValidationError
from ftapp.models.registry import bundled_base_model
from ftapp.names import BASE, MAX_LORA_RANK
from ftapp.serving import setup
from ftapp.serving.backend import (
    MAX_MESSAGE_CHARS,
    ChatRequest,
    Sampling,
    ServedModel,
    check_messages,
)
from ftapp.serving.echo import EchoBackend
from ftapp.serving.hf import HFBackend
from ftapp.serving.vllm_backend import VllmBackend
from ftapp.serving.vllm_server import VllmOptions, server_command, server_env
from ftapp.settings import Settings, load_settings
from ftapp.store import jobs as job_store


def test_serving_settings_are_read_and_checked(tmp_path):
    settings = load_settings({
        "FTAPP_HOME": str(tmp_path), "FTAPP_BACKEND": "HF", "FTAPP_VLLM_GPU_MEMORY": "0.3",
        "FTAPP_VLLM_URL": "http://10.0.0.5:8000", "FTAPP_SERVE_THREADS": "1",
    })  # fmt: skip
    assert settings.backend == "hf" and settings.vllm_gpu_memory == 0.3
    assert settings.vllm_url == "http://10.0.0.5:8000" and settings.serve_threads == 1
    assert load_settings({"FTAPP_HOME": str(tmp_path)}).backend == "auto"
    with pytest.raises(ValidationError, match="FTAPP_BACKEND must be one of auto, vllm, hf"):
        load_settings({"FTAPP_HOME": str(tmp_path), "FTAPP_BACKEND": "tgi"})
    with pytest.raises(ValidationError, match="FTAPP_VLLM_GPU_MEMORY must be above 0"):
        load_settings({"FTAPP_HOME": str(tmp_path), "FTAPP_VLLM_GPU_MEMORY": "1.5"})
    args = load_settings({"FTAPP_HOME": str(tmp_path),
                          "FTAPP_VLLM_ARGS": "--enforce-eager --dtype 'bfloat16'"})  # fmt: skip
    assert args.vllm_args == ("--enforce-eager", "--dtype", "bfloat16")
    with pytest.raises(ValidationError, match="FTAPP_VLLM_ARGS is not valid shell quoting"):
        load_settings({"FTAPP_HOME": str(tmp_path), "FTAPP_VLLM_ARGS": "--x 'open"})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"temperature": -0.1}, "temperature must be from 0 to 2"),
        ({"top_p": 0}, "top_p must be above 0"),
        ({"max_new_tokens": 0}, "max_new_tokens must be from 1"),
        ({"seed": -1}, "seed must be from 0"),
    ],
)
def test_sampling_out_of_range_is_refused(changes, message):
    with pytest.raises(ValidationError, match=message):
        Sampling(**changes)


def test_a_conversation_must_end_with_a_user_message():
    ok = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert check_messages(ok) == ok
    with pytest.raises(ValidationError, match="empty"):
        check_messages([])
    with pytest.raises(ValidationError, match="message 1: role must be one of"):
        check_messages([{"role": "tool", "content": "x"}])
    with pytest.raises(ValidationError, match="last message must be a non-empty user"):
        check_messages([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])
    with pytest.raises(ValidationError, match="last message must be a non-empty user"):
        check_messages([{"role": "user", "content": "  "}])


def test_a_conversation_too_long_for_any_model_is_refused_before_tokenizing():
    at_limit = "x" * MAX_MESSAGE_CHARS
    assert check_messages([{"role": "user", "content": at_limit}])[0]["content"] == at_limit
    with pytest.raises(
        ValidationError, match=r"message 2 is 50,001 characters; the limit is 50,000"
    ):
        check_messages([{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": at_limit + "x"}])  # fmt: skip
    turns = [{"role": role, "content": at_limit} for role in ["user", "assistant"] * 2]
    with pytest.raises(ValidationError, match="the conversation is 250,000 characters"):
        check_messages([*turns, {"role": "user", "content": at_limit}])


def test_echo_backend_streams_the_model_name_and_the_last_user_message():
    request = ChatRequest(ServedModel("job-1"), [{"role": "user", "content": "hello there"}])
    pieces = list(EchoBackend().stream_chat(request))
    assert pieces == ["[job-1]", " hello", " there"]
    short = ChatRequest(request.model, request.messages, Sampling(max_new_tokens=2))
    assert "".join(EchoBackend().stream_chat(short)) == "[job-1] hello"


def base_of(settings: Settings):
    return bundled_base_model(settings.models_dir)


def test_backend_choice_follows_the_settings(settings, monkeypatch):
    base = base_of(settings)
    for backend, kind in [("echo", EchoBackend), ("hf", HFBackend)]:
        chosen = setup.make_backend(Settings(home=settings.home, backend=backend), base)
        assert isinstance(chosen, kind)
    # An external deployment wins over everything: nothing is started.
    external = setup.make_backend(
        Settings(home=settings.home, backend="hf", vllm_url="http://127.0.0.1:9/"), base
    )
    assert isinstance(external, VllmBackend) and external.server is None
    assert external.url == "http://127.0.0.1:9"
    assert external.status().state == "down" and "not answering" in external.status().detail


def test_auto_falls_back_to_in_process_generation_with_the_reason(settings, monkeypatch):
    base = base_of(settings)
    monkeypatch.setattr(setup, "vllm_importable", lambda: (False, "vLLM is not installed here"))
    chosen = setup.make_backend(settings, base)
    assert isinstance(chosen, HFBackend)
    assert "vLLM is not installed here, so generation runs in this process" in (
        chosen.status().detail
    )
    with pytest.raises(ValidationError, match="FTAPP_BACKEND=vllm, but vLLM is not installed"):
        setup.make_backend(Settings(home=settings.home, backend="vllm"), base)


def test_auto_picks_a_supervised_vllm_server_where_vllm_is_installed(settings, monkeypatch):
    monkeypatch.setattr(setup, "vllm_importable", lambda: (True, ""))
    chosen = setup.make_backend(settings, base_of(settings))
    assert isinstance(chosen, VllmBackend) and chosen.server is not None
    assert chosen.server.options.max_lora_rank == MAX_LORA_RANK
    assert chosen.server.options.log_path == settings.logs_dir / "vllm.log"
    assert chosen.status().state == "starting"  # not started: its start() does that


def test_the_vllm_command_binds_loopback_with_runtime_lora_loading(tmp_path):
    options = VllmOptions(model_path=tmp_path / "m", log_path=tmp_path / "log", max_lora_rank=64,
                          threads=1, kv_cache_gb=2)  # fmt: skip
    command = server_command(options, 8123, cuda=False)
    joined = " ".join(command)
    # vLLM's server module, run by ftapp's entry that kills it when the app is gone.
    assert "-m ftapp.serving.vllm_entry vllm.entrypoints.openai.api_server --model" in joined
    assert "--host 127.0.0.1 --port 8123" in joined
    assert "--enable-lora --max-lora-rank 64 --max-loras 4" in joined
    assert "--served-model-name base" in joined and "--gpu-memory-utilization" not in joined
    assert "--gpu-memory-utilization 0.5" in " ".join(server_command(options, 1, cuda=True))
    extra = VllmOptions(model_path=tmp_path, log_path=tmp_path, max_lora_rank=8,
                        extra_args=("--enforce-eager",))  # fmt: skip
    assert server_command(extra, 1, cuda=False)[-1] == "--enforce-eager"
    env = server_env(options)
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and env["FTAPP_VLLM_CPU_LORA"] == "1"
    assert env["FTAPP_VLLM_PARENT_PID"] == str(os.getpid())
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2" and env["VLLM_CPU_OMP_THREADS_BIND"] == "0-0"


def test_a_long_tmpdir_is_not_handed_to_vllm(tmp_path, monkeypatch):
    """vLLM's socket paths live in TMPDIR and may not exceed 107 bytes."""
    long_dir = tmp_path / ("x" * 60)
    long_dir.mkdir()
    monkeypatch.setenv("TMPDIR", str(long_dir))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    options = VllmOptions(model_path=tmp_path, log_path=tmp_path / "log", max_lora_rank=8)
    assert server_env(options)["TMPDIR"] == "/tmp"


def add_adapter_variant(db, folder: Path, name: str, base_model: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4}))
    job_store.add_variant(db, {"name": name, "kind": "adapter", "base_model": base_model,
                               "path": str(folder), "job_id": None, "step": 4,
                               "eval_loss": None, "is_best": 0})  # fmt: skip
    return folder


def test_model_names_resolve_to_the_base_or_an_adapter_of_it(db, settings, tmp_path):
    base = base_of(settings)
    folder = add_adapter_variant(db, tmp_path / "a", "job-1", base.name)
    add_adapter_variant(db, tmp_path / "b", "other-base", "some/other-model")
    gone = add_adapter_variant(db, tmp_path / "c", "job-2/step-2", base.name)
    (gone / "adapter_config.json").unlink()

    assert setup.served_model(db, base, BASE) == ServedModel(BASE)
    assert setup.served_model(db, base, "") == ServedModel(BASE)
    assert setup.served_model(db, base, "job-1") == ServedModel("job-1", folder)
    assert setup.servable_models(db, base) == [BASE, "job-2/step-2", "job-1"]
    with pytest.raises(ValidationError, match="adapter for some/other-model, but this app"):
        setup.served_model(db, base, "other-base")
    with pytest.raises(ValidationError, match="its adapter folder .* is missing"):
        setup.served_model(db, base, "job-2/step-2")
    with pytest.raises(Exception, match="no model variant named 'nope'"):
        setup.served_model(db, base, "nope")


def test_services_stream_a_reply_through_the_configured_backend(settings):
    from ftapp.services import Services

    services = Services(Settings(home=settings.home, backend="echo"))
    messages = [{"role": "user", "content": "ping"}]
    assert "".join(services.stream_chat(BASE, messages, Sampling())) == "[base] ping"
    with pytest.raises(ValidationError, match="last message must be"):
        services.stream_chat(BASE, [{"role": "assistant", "content": "x"}], Sampling())
