"""Cancelling a running job with a real worker and child: it stops at the next step, ends
`cancelled`, and what it saved so far stays registered and loads."""

from pathlib import Path

from ftapp.records import JobStatus
from ftapp.store import jobs as store
from ftapp.training.jobs import cancel_job, queue_job
from tests.training.conftest import checkpoints_of, job_now, tiny_config, wait_for


def load_adapter(base_dir, adapter_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base_dir)),
                                      str(adapter_dir))  # fmt: skip
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert logits.shape[:2] == (1, 3) and torch.isfinite(logits).all()
    return model


def test_cancel_a_running_job_keeps_what_it_saved(
    db, settings, tiny, tiny_model_dir, version, background_worker
):
    job = queue_job(db, settings, tiny_config(version, max_steps=400), "alice")
    with background_worker():
        wait_for(lambda: checkpoints_of(settings, job.id), "a first checkpoint")
        asked = cancel_job(db, job.id)
        assert asked.status == JobStatus.RUNNING and asked.is_cancel_requested
        wait_for(lambda: job_now(settings, job.id).status.is_finished, "the job to stop")
    done = job_now(settings, job.id)
    assert store.claim_next_job(db, "another", "cpu") is None  # it is not picked up again
    assert done.status == JobStatus.CANCELLED and done.finished_at and done.attempts == 1
    assert done.step < 400 and done.error.startswith(f"cancelled at step {done.step}")
    assert "the adapter so far are kept" in done.error  # the child stopped by itself

    variants = store.list_variants(db, job.id)
    checkpoints = [v for v in variants if v.kind == "checkpoint"]
    assert checkpoints and all(v.step <= done.step for v in checkpoints)
    assert [v.kind for v in variants].count("adapter") == 1
    for variant in variants:
        assert Path(variant.path).is_relative_to(done.output_dir)
        load_adapter(tiny_model_dir, variant.path)
