"""Validation loss drives early stopping: a run whose validation loss keeps rising stops
after `early_stopping_patience` evaluations without improvement, long before max_steps, and
its final adapter is the best checkpoint."""

from ftapp.records import JobStatus
from ftapp.store import jobs as store
from ftapp.training.jobs import queue_job
from ftapp.training.worker import Worker
from tests.training.conftest import tiny_config


def test_rising_validation_loss_stops_the_run_early(db, settings, tiny, version):
    # A learning rate this high makes the tiny model diverge: validation loss climbs.
    config = tiny_config(version, max_steps=40, eval_steps=1, save_steps=1,
                         early_stopping_patience=2, learning_rate=0.9)  # fmt: skip
    job = queue_job(db, settings, config, "tester")
    assert Worker(settings).run_once()

    done = store.get_job(db, job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    evals = [m["loss"] for m in store.job_metrics(db, job.id) if m["kind"] == "eval"]
    best_at = evals.index(min(evals))
    assert done.step < 40  # stopped early
    # It stopped once `patience` evaluations in a row failed to beat the best one.
    assert len(evals) - 1 - best_at == 2
    variants = store.list_variants(db, job_id=job.id)
    [best] = [v for v in variants if v.is_best]
    adapter = next(v for v in variants if v.kind == "adapter")
    assert best.eval_loss == min(evals) == adapter.eval_loss
