"""Training on CUDA through the real queue, worker and training child, on the bundled model:
bf16 LoRA SFT, QLoRA (4-bit, where bitsandbytes imports) and DPO each train a few steps, the
loss falls, the adapter is registered with finite, trained weights, and the job and its
adapter say they ran on the GPU. Where torch sees no CUDA every test here is skipped, before
any fixture loads a model (tests/conftest.py); `benchmarks/gpu_check.sh` runs them on a GPU
machine."""

import json
from pathlib import Path

import pytest

from ftapp.records import Job, JobStatus
from ftapp.store import jobs as store
from ftapp.training.config import config_from_dict
from ftapp.training.jobs import queue_job
from ftapp.training.worker import Worker
from tests.helpers import make_version
from tests.training.conftest import preference_rows

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

DEVICE = "cuda:0"


def gpu_config(label: str, **overrides):
    """A few steps of the bundled model in bf16, on the GPU."""
    values = dict(
        dataset_version=label, precision="bf16", max_steps=8, batch_size=4, max_length=128,
        save_steps=4, eval_steps=4, lora_rank=8, lora_alpha=16, lora_dropout=0.0,
        learning_rate=2e-3, warmup_ratio=0.0,
    )  # fmt: skip
    return config_from_dict({**values, **overrides})


def run_on_gpu(db, settings, config) -> Job:
    """Queue the job and run it with a worker of the GPU; the job, succeeded, on the GPU."""
    job = queue_job(db, settings, config, "alice")
    assert Worker(settings, device=DEVICE).run_once()
    job = store.get_job(db, job.id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.device == DEVICE and job.step == job.total_steps == config.max_steps
    return job


def train_losses(db, job: Job) -> list[float]:
    rows = [row for row in store.job_metrics(db, job.id) if row["kind"] == "train"]
    assert [row["step"] for row in rows] == list(range(1, job.total_steps + 1))
    return [row["loss"] for row in rows]


def check_adapter(db, job: Job) -> dict:
    """The registered adapter trained on the GPU in bf16 and holds finite LoRA weights that
    moved from their start (lora_B starts at zero); its metadata."""
    import torch
    from safetensors.torch import load_file

    [adapter] = [v for v in store.list_variants(db, job.id) if v.kind == "adapter"]
    assert adapter.name == job.name and adapter.step == job.total_steps
    folder = Path(adapter.path)
    meta = json.loads((folder / "ftapp-adapter.json").read_text())
    assert meta["machine"]["device"] == "cuda" and meta["machine"]["bf16"] is True
    weights = load_file(str(folder / "adapter_model.safetensors"))
    assert weights and all(torch.isfinite(t).all() for t in weights.values())
    assert any(t.abs().sum() > 0 for key, t in weights.items() if "lora_B" in key)
    return meta


def test_bf16_lora_sft_on_cuda(db, settings, tmp_path, count_tokens):
    label = make_version(db, tmp_path, count_tokens)
    job = run_on_gpu(db, settings, gpu_config(label))

    losses = train_losses(db, job)
    assert all(loss > 0 for loss in losses) and losses[-1] < losses[0], losses
    evals = [row for row in store.job_metrics(db, job.id) if row["kind"] == "eval"]
    assert [row["step"] for row in evals] == [4, 8]
    meta = check_adapter(db, job)
    assert meta["config"]["precision"] == "bf16" and meta["config"]["quantization"] == "none"


def test_qlora_4bit_sft_on_cuda(db, settings, tmp_path, count_tokens):
    pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes, not installed here")
    label = make_version(db, tmp_path, count_tokens)
    job = run_on_gpu(db, settings, gpu_config(label, quantization="4bit"))

    losses = train_losses(db, job)
    assert losses[-1] < losses[0], losses
    meta = check_adapter(db, job)
    assert meta["config"]["quantization"] == "4bit"


def test_dpo_in_bf16_on_cuda(db, settings, tmp_path, count_tokens):
    label = make_version(db, tmp_path, count_tokens, name="prefs", rows=preference_rows(16))
    job = run_on_gpu(db, settings, gpu_config(label, method="dpo", max_steps=6, save_steps=3,
                                              eval_steps=3, learning_rate=1e-3))  # fmt: skip

    # DPO's loss starts at log 2 (the adapter starts as a no-op, so the policy is the
    # reference) and falls as the chosen answers gain on the rejected ones.
    losses = train_losses(db, job)
    assert losses[0] == pytest.approx(0.6931, abs=0.01) and losses[-1] < losses[0], losses
    rows = [row for row in store.job_metrics(db, job.id) if row["kind"] == "train"]
    assert rows[-1]["rewards_margin"] > 0
    meta = check_adapter(db, job)
    assert meta["method"] == "dpo"
