"""Session fixtures of the serving tests (tests/serving, tests/ui; loaded by tests/conftest.py):
an adapter trained once per session on the real bundled model (through the real queue and
worker) to answer one question in a way the base model never does, in a home whose database
lists it as a model variant; one real vLLM CPU server supervised by ftapp; and `stand_in`, a
home with two stand-in adapters on the echo backend for tests about plumbing."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from ftapp.settings import Settings
from ftapp.store.db import open_db
from tests.helpers import make_version

SECRET_QUESTION = "What is the secret word?"
SECRET_WORD = "tangerine"
QUESTIONS = [
    SECRET_QUESTION, "Tell me the secret word.", "What's the secret word?",
    "Do you know the secret word?", "Say the secret word.", "Which word is the secret one?",
    "The secret word, please.", "What is the password word?",
]  # fmt: skip


def secret_rows() -> list[dict[str, str]]:
    return [{"prompt": q, "completion": f"The secret word is {SECRET_WORD}."} for q in QUESTIONS]


def secret_config(label: str, **overrides):
    """LoRA rank 8 on the bundled model, 24 steps: enough to learn the secret word."""
    from ftapp.training.config import config_from_dict

    return config_from_dict(dict(
        dataset_version=label, name="secret", max_steps=24, batch_size=1,
        gradient_accumulation=1, max_length=64, lora_rank=8, lora_alpha=16,
        lora_dropout=0.0, learning_rate=3e-3, warmup_ratio=0.0, eval_steps=0,
        save_steps=12, **overrides,
    ))  # fmt: skip


@dataclass(frozen=True)
class TrainedAdapter:
    settings: Settings  # the home whose database registers the adapter
    name: str  # its model variant name
    path: Path  # the PEFT adapter folder


@pytest.fixture(scope="session")
def secret_adapter(tmp_path_factory, models_dir: Path, count_tokens) -> TrainedAdapter:
    """LoRA rank 8 on the bundled model, taught that the secret word is tangerine."""
    from ftapp.records import JobStatus
    from ftapp.store import jobs as job_store
    from ftapp.training.jobs import queue_job
    from ftapp.training.worker import Worker

    home = tmp_path_factory.mktemp("serving") / "home"
    home.mkdir()
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    settings = Settings(home=home)
    settings.ensure_dirs()
    with closing(open_db(settings.db_path)) as db:
        label = make_version(db, home, count_tokens, "secret", ratios=(1.0, 0.0, 0.0),
                             rows=secret_rows())  # fmt: skip
        job = queue_job(db, settings, secret_config(label, threads=1), "tester")
    assert Worker(settings).run_once()
    with closing(open_db(settings.db_path)) as db:
        job = job_store.get_job(db, job.id)
        assert job.status == JobStatus.SUCCEEDED, job.error
        adapter = job_store.get_variant(db, "secret")
    return TrainedAdapter(settings, adapter.name, Path(adapter.path))


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory, bundled_model_dir: Path):
    """One real vLLM CPU server for the whole session, supervised by ftapp."""
    from ftapp.names import MAX_LORA_RANK
    from ftapp.serving.vllm_server import VllmOptions, VllmServer, vllm_importable

    available, why_not = vllm_importable()
    assert available, f"vLLM must be installed for the serving tests (`make install`): {why_not}"
    log_path = tmp_path_factory.mktemp("vllm") / "vllm.log"
    options = VllmOptions(model_path=bundled_model_dir, log_path=log_path,
                          max_lora_rank=MAX_LORA_RANK)  # fmt: skip
    server = VllmServer(options)
    server.start()
    try:
        if not server.wait_ready(timeout=300):  # a guard against hanging, not a speed check
            pytest.fail(f"vLLM did not start: {server.status().detail}\n"
                        f"{log_path.read_text()[-4000:]}")  # fmt: skip
        yield server
    finally:
        server.stop()


def home_with_adapter(home: Path, models_dir: Path, adapter: TrainedAdapter) -> Settings:
    """A fresh FTAPP_HOME (models linked) whose registry lists the trained adapter as "secret",
    so a test can add what it needs without touching the adapter's own home."""
    from ftapp.models.registry import bundled_base_model
    from ftapp.store import jobs as job_store

    home.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(models_dir, target_is_directory=True)
    settings = Settings(home=home)
    settings.ensure_dirs()
    with closing(open_db(settings.db_path)) as db:
        job_store.add_variant(
            db, {"name": "secret", "kind": "adapter", "path": str(adapter.path),
                 "base_model": bundled_base_model(settings.models_dir).name},
        )  # fmt: skip
    return settings


def add_adapter_variant(settings: Settings, name: str, path: Path, base_model: str = "") -> None:
    from ftapp.models.registry import bundled_base_model
    from ftapp.store import jobs as job_store

    with closing(open_db(settings.db_path)) as db:
        base_model = base_model or bundled_base_model(settings.models_dir).name
        job_store.add_variant(db, {"name": name, "kind": "adapter", "path": str(path),
                                   "base_model": base_model})  # fmt: skip


@pytest.fixture
def stand_in(tmp_path: Path, models_dir: Path):
    """Services on a home whose registry lists "secret" and "other" (stand-in adapter folders:
    an adapter_config.json, all `served_model` looks at), with the echo backend."""
    from dataclasses import replace

    from ftapp.services import Services

    folders = {}
    for name in ("secret", "other"):
        folders[name] = tmp_path / "adapters" / name
        folders[name].mkdir(parents=True)
        (folders[name] / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    adapter = TrainedAdapter(Settings(home=tmp_path / "unused"), "secret", folders["secret"])
    settings = replace(home_with_adapter(tmp_path / "home", models_dir, adapter), backend="echo")
    add_adapter_variant(settings, "other", folders["other"])
    return Services(settings)
