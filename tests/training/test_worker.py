"""The worker with real training children on the tiny model: a crashing job fails with a
reason and the same worker runs the next one; a stale job is recovered and resumed by the
next run_once; nothing to do means no job ran."""

import shutil
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ftapp.data.importer import import_file
from ftapp.data.review import set_status_where
from ftapp.data.splits import assign_splits
from ftapp.data.versions import freeze_version
from ftapp.models.registry import add_base_model
from ftapp.records import JobStatus
from ftapp.store import jobs as store
from ftapp.store.db import connect
from ftapp.training.jobs import log_tail, queue_job
from ftapp.training.worker import Worker
from tests.helpers import pc, write_jsonl
from tests.training.conftest import tiny_config


def test_a_crashing_job_fails_with_a_reason_and_the_worker_goes_on(
    db, settings, tiny, tiny_model_dir, version, tmp_path
):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    for item in tiny_model_dir.iterdir():
        if item.name != "model.safetensors":
            shutil.copy(item, broken / item.name)
    (broken / "model.safetensors").write_bytes(b"\x00\x01 these are not tensors " * 40)
    add_base_model(db, settings.models_dir, str(broken), name="broken")
    bad = queue_job(db, settings, tiny_config(version, base_model="broken"), "alice")
    good = queue_job(db, settings, tiny_config(version, max_steps=2), "alice")

    the_worker = Worker(settings)
    assert the_worker.run_once()
    failed = store.get_job(db, bad.id)
    assert failed.status == JobStatus.FAILED and failed.finished_at and failed.attempts == 1
    assert failed.error and "\n" not in failed.error and "Traceback" not in failed.error
    assert "safetensors" in failed.error.lower() or "header" in failed.error.lower()
    log = Path(failed.log_path).read_text()
    assert "Traceback" in log and failed.error.split(":")[0] in log
    assert log_tail(failed, lines=5)  # the log is kept and readable from the app
    assert store.list_variants(db, bad.id) == []

    assert the_worker.run_once()  # the same worker, the next job
    done = store.get_job(db, good.id)
    assert done.status == JobStatus.SUCCEEDED and done.error is None, done.error
    assert done.step == done.total_steps == 2
    assert [v.kind for v in store.list_variants(db, good.id)] == ["checkpoint", "adapter"]
    assert not the_worker.run_once()  # nothing left


def diverging_version(db, folder, count_tokens) -> str:
    """Train answers all "yes ...", validation answers all "no ...": with the loss on answers
    only, every step makes the evaluation worse, so the last model is never the best one."""
    rows = [pc(f"Question {i}?", "yes " * 8) for i in range(12)]
    rows += [pc(f"Other question {i}?", "no " * 8) for i in range(4)]
    import_file(db, write_jsonl(folder / "diverging.jsonl", rows), "diverging",
                count_tokens=count_tokens, max_tokens=512)  # fmt: skip
    set_status_where(db, "diverging", "accepted", "tester")
    assign_splits(db, "diverging", (1, 0, 0))
    db.execute("UPDATE examples SET split = 'validation' WHERE messages_json LIKE '%no no%'")
    return freeze_version(db, "diverging", "tester")[0].label


def test_run_once_recovers_a_stale_job_and_runs_it_again(db, settings, tiny, tmp_path,
                                                          count_tokens):  # fmt: skip
    label = diverging_version(db, tmp_path, count_tokens)
    # No checkpoints (save_steps 0): the job starts over, and its adapter is the last model.
    config = tiny_config(label, max_steps=4, eval_steps=1, save_steps=0, learning_rate=0.05)
    job = queue_job(db, settings, config, "alice")
    # Its first worker claimed it on this device and then went silent ten minutes ago.
    assert store.claim_next_job(db, "lost-host:1", "cpu").id == job.id
    long_ago = (datetime.now(UTC) - timedelta(minutes=10)).isoformat(timespec="milliseconds")
    db["jobs"].update(job.id, {"heartbeat_at": long_ago})

    assert Worker(settings).run_once()
    with closing(connect(settings.db_path)) as fresh:
        done = store.get_job(fresh, job.id)
        metrics = store.job_metrics(fresh, job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.attempts == 2 and done.worker_id != "lost-host:1"
    assert done.metrics["resumed_from"] is None
    assert [row["step"] for row in metrics if row["kind"] == "train"] == [1, 2, 3, 4]
    evals = [row["loss"] for row in metrics if row["kind"] == "eval"]
    assert len(evals) == 4 and evals[-1] > min(evals)  # the data does diverge
    # The adapter records its own step and eval loss, not the best one seen on the way.
    [adapter] = store.list_variants(db, job.id)
    assert adapter.kind == "adapter" and adapter.step == 4 and not adapter.is_best
    assert adapter.eval_loss == evals[-1] == done.metrics["eval_loss"]
