"""One GPU shared by vLLM and training: the memory estimate moves the right way with the
config, and a job that would not fit beside vLLM waits in the queue saying why, then runs
once memory is free. This machine has no GPU: `nvidia-smi` is a script on PATH that reports
the free memory the test sets (the one piece of hardware faked)."""

import os
import stat
from pathlib import Path

import pytest

from ftapp.records import JobStatus
from ftapp.store import jobs as store
from ftapp.training.gpu_memory import (
    GpuMemory,
    estimate_training_gib,
    gpu_memory,
    model_shape,
    wait_reason,
)
from ftapp.training.jobs import queue_job
from ftapp.training.worker import Worker
from tests.training.conftest import tiny_config


def test_the_estimate_grows_with_the_batch_and_shrinks_with_checkpointing(bundled_model_dir):
    shape = model_shape(bundled_model_dir)
    params = shape.parameters
    assert 120e6 < params < 150e6 and (shape.hidden, shape.layers, shape.vocab) == (576, 30, 49152)
    config = tiny_config("x@v1", batch_size=4, max_length=512)
    base = estimate_training_gib(config, bundled_model_dir)
    weights_gib = params * 2 / 2**30
    assert base > weights_gib + 1  # weights, activations and the CUDA context
    bigger = estimate_training_gib(tiny_config("x@v1", batch_size=8, max_length=512),
                                   bundled_model_dir)  # fmt: skip
    assert bigger > base
    ckpt = tiny_config("x@v1", batch_size=4, max_length=512, gradient_checkpointing=True)
    assert estimate_training_gib(ckpt, bundled_model_dir) < base
    four_bit = tiny_config("x@v1", batch_size=4, max_length=512, quantization="4bit")
    assert estimate_training_gib(four_bit, bundled_model_dir) < base


def test_the_wait_reason_says_what_is_needed_and_what_to_do():
    assert wait_reason(3.0, None, 0.5) is None  # no GPU: nothing to wait for
    assert wait_reason(3.0, GpuMemory(free_gib=10, total_gib=80), 0.5) is None
    reason = wait_reason(30.0, GpuMemory(free_gib=10, total_gib=80), 0.5)
    assert "needs about 30.0 GiB and 10.0 of 80.0 GiB are free" in reason
    assert "vLLM keeps 50%, about 40.0 GiB" in reason and "FTAPP_VLLM_GPU_MEMORY" in reason


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """An `nvidia-smi` on PATH that prints '<free MiB>, <total MiB>' from a file."""
    folder = tmp_path / "bin"
    folder.mkdir()
    reading = tmp_path / "memory.csv"
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat {reading}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")

    def set_free(free_mib: int, total_mib: int = 81920) -> None:
        reading.write_text(f"{free_mib}, {total_mib}\n")

    return set_free


def test_gpu_memory_is_read_from_nvidia_smi(fake_nvidia_smi):
    fake_nvidia_smi(2048, 81920)
    assert gpu_memory(0) == GpuMemory(free_gib=2.0, total_gib=80.0)


def test_a_job_that_does_not_fit_waits_then_runs_when_memory_frees(
    db, settings, tiny, version, fake_nvidia_smi
):
    job = queue_job(db, settings, tiny_config(version), "alice")
    worker = Worker(settings, device="cuda:0")

    fake_nvidia_smi(100)  # 0.1 GiB free: less than the CUDA context alone
    assert worker.run_once() is False
    waiting = store.get_job(db, job.id)
    assert waiting.status == JobStatus.QUEUED
    assert waiting.waiting_reason.startswith("waiting for GPU memory: this job needs about")

    fake_nvidia_smi(40960)  # vLLM let go of memory: the job starts (on this CPU, for real)
    assert worker.run_once() is True
    done = store.get_job(db, job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.waiting_reason is None and done.device == "cuda:0"
    assert Path(done.output_dir, "adapter", "adapter_config.json").is_file()
