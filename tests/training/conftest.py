"""Fixtures for the training tests: a tiny Llama built once per session (same tokenizer and
chat template as the bundled model, so plumbing tests train in seconds), a frozen dataset
version, configs sized for a 2-core CPU, a worker in a background thread, and a reaper that
ends every training process a test left behind."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import pytest

from ftapp.settings import Settings
from ftapp.store import jobs as store
from ftapp.store.db import connect
from ftapp.training.config import TrainConfig, config_from_dict
from tests.helpers import make_version

TINY_MODEL = "tiny"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, bundled_model_dir: Path) -> Path:
    """A randomly initialised 2-layer Llama (fixed seed) with the bundled tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("models") / TINY_MODEL
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_dir))
    config = LlamaConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        intermediate_size=128, vocab_size=len(tokenizer), max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture
def tiny(db, settings: Settings, tiny_model_dir: Path) -> str:
    """The tiny model registered as a base model of this test's database; its name."""
    from ftapp.models.registry import add_base_model

    return add_base_model(db, settings.models_dir, str(tiny_model_dir), name=TINY_MODEL).name


@pytest.fixture
def version(db, tmp_path: Path, count_tokens) -> str:
    """qa@v1: 24 examples, 18 train and 6 validation."""
    return make_version(db, tmp_path, count_tokens)


def tiny_config(dataset_version: str, **overrides: Any) -> TrainConfig:
    """A config that trains the tiny model in a few seconds on one thread."""
    values = dict(
        dataset_version=dataset_version, base_model=TINY_MODEL, max_steps=4, batch_size=2,
        max_length=64, save_steps=2, eval_steps=2, lora_rank=4, lora_alpha=8,
        warmup_ratio=0.0, learning_rate=1e-2, precision="fp32", threads=1,
    )  # fmt: skip
    return config_from_dict({**values, **overrides})


def preference_rows(n: int) -> list[dict]:
    """Pairs whose chosen answer ends with a sign-off and whose rejected answer doesn't."""
    return [{"prompt": f"What is {i} plus {i}?", "chosen": f"{2 * i}. Cheers, Ada",
             "rejected": f"It is {2 * i}."} for i in range(n)]  # fmt: skip


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 180.0) -> Any:
    """Poll until condition() is truthy and return it; fail saying what never happened.
    The timeout is a guard against hanging, not a speed assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def job_now(settings: Settings, job_id: int):
    with closing(connect(settings.db_path)) as db:
        return store.get_job(db, job_id)


def checkpoints_of(settings: Settings, job_id: int):
    with closing(connect(settings.db_path)) as db:
        return [v for v in store.list_variants(db, job_id) if v.kind == "checkpoint"]


class BackgroundWorker:
    """A real Worker (children are real processes) looping in a thread of the test process."""

    def __init__(self, settings: Settings):
        from ftapp.training.worker import Worker

        self.worker = Worker(settings, poll_seconds=0.2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="test-worker")

    def _run(self) -> None:
        try:
            self.worker.run_forever()
        except BaseException as exc:  # reported by __exit__
            self.error = exc

    def __enter__(self) -> BackgroundWorker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # A job still running is stopped (SIGTERM, then SIGKILL) by the worker itself.
        self.worker.stopping.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the worker thread did not stop"
        if self.error:
            raise self.error


@pytest.fixture
def background_worker(settings: Settings):
    return lambda: BackgroundWorker(settings)


@pytest.fixture(autouse=True)
def reaper(settings: Settings):
    """Processes started by a test (worker subprocesses via `reaper.append`, and the training
    children recorded in this test's jobs table) never outlive it."""
    started: list = []
    yield started
    for process in started:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    if settings.db_path.exists():
        from ftapp.training.runs import kill_training_child

        with closing(connect(settings.db_path)) as db:
            if db["jobs"].exists():
                for job in store.list_jobs(db):
                    kill_training_child(job)  # only a live training child of this job
