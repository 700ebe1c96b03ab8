"""End to end on the real bundled model: queue, a worker runs the child, and the adapter folder,
progress rows, model variants and weights are what the rest of the app relies on."""

import json
from pathlib import Path

import pytest

from ftapp.models.bundled import BUNDLED_MODEL
from ftapp.records import JobStatus
from ftapp.store import jobs as store
from ftapp.store.versions import get_version_by_id
from ftapp.training.config import TrainConfig, config_from_dict, config_from_yaml
from ftapp.training.jobs import queue_job
from ftapp.training.worker import Worker
from tests.helpers import make_version


@pytest.mark.slow
def test_train_the_bundled_model_end_to_end(db, settings, bundled_model_dir, tmp_path,
                                            count_tokens):  # fmt: skip
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    label = make_version(db, tmp_path, count_tokens, n=16, ratios=(0.75, 0.25, 0.0))
    config = config_from_dict(dict(
        dataset_version=label, max_steps=4, batch_size=2, max_length=64, save_steps=2,
        eval_steps=2, lora_rank=4, lora_alpha=8, learning_rate=5e-3, warmup_ratio=0.0,
        threads=1,  # one thread: measured ~10x faster than two when the CPU is shared
    ))  # fmt: skip
    job = queue_job(db, settings, config, "alice")
    assert job.base_model == BUNDLED_MODEL
    assert Worker(settings).run_once()

    job = store.get_job(db, job.id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == 1 and job.step == job.total_steps == 4 and job.finished_at
    assert job.metrics["resumed_from"] is None and job.metrics["train_loss"] > 0

    # Progress rows: a train loss every step, an evaluation every eval_steps.
    rows = store.job_metrics(db, job.id)
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 and r["learning_rate"] is not None for r in train)
    assert [r["step"] for r in evals] == [2, 4] and all(r["loss"] > 0 for r in evals)

    # Variants: every checkpoint and the final adapter; the best checkpoint is marked once.
    variants = store.list_variants(db, job.id)
    checkpoints = [v for v in variants if v.kind == "checkpoint"]
    assert [v.step for v in checkpoints] == [2, 4]
    assert [v.eval_loss for v in checkpoints] == [r["loss"] for r in evals]
    assert [v.name for v in checkpoints] == [f"{job.name}/step-2", f"{job.name}/step-4"]
    [best] = [v for v in variants if v.is_best]
    assert best.kind == "checkpoint" and best.eval_loss == min(r["loss"] for r in evals)
    [adapter] = [v for v in variants if v.kind == "adapter"]
    assert adapter.name == job.name and adapter.base_model == BUNDLED_MODEL
    assert adapter.step == 4 and not adapter.is_best
    assert adapter.eval_loss == best.eval_loss  # the final adapter is the best checkpoint
    adapter_dir = Path(adapter.path)
    assert adapter_dir == Path(job.output_dir) / "adapter"

    # The adapter folder: PEFT files, our metadata, the config it was trained with.
    for name in ("adapter_config.json", "adapter_model.safetensors", "ftapp-adapter.json",
                 "config.yaml"):  # fmt: skip
        assert (adapter_dir / name).is_file(), name
    assert config_from_yaml((adapter_dir / "config.yaml").read_text()) == TrainConfig(**job.config)
    meta = json.loads((adapter_dir / "ftapp-adapter.json").read_text())
    version = get_version_by_id(db, job.dataset_version_id)
    assert meta["base_model"] == BUNDLED_MODEL
    assert Path(meta["base_model_path"]).resolve() == bundled_model_dir.resolve()
    assert meta["dataset_version"] == label == version.label
    assert meta["dataset_content_hash"] == version.content_hash
    assert meta["examples"] == {"train": 12, "validation": 4}
    assert meta["config"] == job.config and meta["metrics"] == job.metrics
    assert meta["best_checkpoint"] == best.path
    peft_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert peft_config["r"] == 4 and peft_config["lora_alpha"] == 8
    assert {"q_proj", "v_proj", "down_proj"} <= set(peft_config["target_modules"])

    # The saved template is the model's own, not the training twin with generation markers.
    saved_template = (adapter_dir / "chat_template.jinja").read_text()
    assert saved_template == (bundled_model_dir / "chat_template.jinja").read_text()
    assert "{% generation %}" not in saved_template
    for checkpoint in checkpoints:
        assert (Path(checkpoint.path) / "chat_template.jinja").read_text() == saved_template

    # Only LoRA weights were saved, they moved away from their init (lora_B starts at zero),
    # and the base weights under the adapter are the original ones.
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    assert weights and all("lora_A" in key or "lora_B" in key for key in weights)
    assert any(t.abs().sum() > 0 for key, t in weights.items() if "lora_B" in key)
    original = AutoModelForCausalLM.from_pretrained(str(bundled_model_dir), dtype=torch.float32)
    reference = original.model.layers[0].self_attn.q_proj.weight.detach().clone()
    tuned = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(bundled_model_dir), dtype=torch.float32),
        str(adapter_dir),
    )
    q_proj = tuned.base_model.model.model.layers[0].self_attn.q_proj
    assert torch.equal(q_proj.base_layer.weight, reference)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert not torch.allclose(tuned(input_ids=ids).logits, original(input_ids=ids).logits)
