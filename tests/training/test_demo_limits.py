"""The public demo's limits on training jobs (few examples, few steps, a time limit) and the
time limit itself: a real run on the tiny model stops at it, keeps its adapter and succeeds."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ftapp.errors import ValidationError
from ftapp.records import JobStatus
from ftapp.store import jobs as store
from ftapp.training.config import config_from_dict
from ftapp.training.jobs import queue_job
from ftapp.training.trainer import ADAPTER_DIR, METADATA_FILE
from ftapp.training.worker import Worker
from tests.training.conftest import tiny_config


def demo(settings, **limits):
    return replace(settings, demo=True, **limits)


def test_time_limit_must_not_be_negative(version):
    with pytest.raises(ValidationError, match=r"^time_limit_minutes: must be 0 \(no limit\)"):
        tiny_config(version, time_limit_minutes=-1)
    with pytest.raises(ValidationError, match="time_limit_minutes: expected float"):
        config_from_dict({"dataset_version": version, "time_limit_minutes": "soon"})
    assert tiny_config(version).time_limit_minutes == 0.0  # no limit unless asked


def test_demo_refuses_a_version_with_too_many_training_examples(db, settings, tiny, version):
    # qa@v1 has 18 training examples.
    limited = demo(settings, demo_max_examples=17)
    with pytest.raises(ValidationError) as refused:
        queue_job(db, limited, tiny_config(version), "alice")
    assert str(refused.value) == (
        "dataset_version: qa@v1 has 18 training examples; the demo trains on at most 17 "
        "(FTAPP_DEMO_MAX_EXAMPLES)"
    )
    assert db["jobs"].count == 0
    # At the limit exactly, the same version is queued.
    job = queue_job(db, demo(settings, demo_max_examples=18), tiny_config(version), "alice")
    assert [row["id"] for row in db["jobs"].rows] == [job.id]


@pytest.mark.parametrize("max_steps", [0, 61, 1000])
def test_demo_refuses_max_steps_off_its_range(db, settings, tiny, version, max_steps):
    with pytest.raises(ValidationError) as refused:
        queue_job(db, demo(settings), tiny_config(version, max_steps=max_steps), "alice")
    message = str(refused.value)
    assert message.startswith(f"max_steps: the demo allows 1 to 60 steps (FTAPP_DEMO_MAX_STEPS), "
                              f"got {max_steps}")  # fmt: skip
    assert db["jobs"].count == 0


@pytest.mark.parametrize(
    ("asked", "stored"),
    [(0.0, 10.0), (30.0, 10.0), (10.0, 10.0), (2.5, 2.5)],
)
def test_demo_jobs_get_a_time_limit_of_at_most_the_demo_minutes(
    db, settings, tiny, version, asked, stored
):
    config = tiny_config(version, max_steps=60, time_limit_minutes=asked)
    job = queue_job(db, demo(settings), config, "alice")
    saved = json.loads(db.execute("SELECT config_json FROM jobs WHERE id = ?",
                                  [job.id]).fetchone()[0])  # fmt: skip
    assert saved["time_limit_minutes"] == stored == job.config["time_limit_minutes"]
    assert saved["max_steps"] == 60 and saved["name"] == f"qa-v1-job{job.id}"


def test_outside_the_demo_nothing_is_limited(db, settings, tiny, version):
    assert not settings.demo
    tight = replace(settings, demo_max_examples=1, demo_max_steps=1, demo_max_minutes=1)
    by_epochs = queue_job(db, tight, tiny_config(version, max_steps=0, epochs=1.0), "alice")
    long = queue_job(db, tight, tiny_config(version, max_steps=5000), "alice")
    timed = queue_job(db, tight, tiny_config(version, time_limit_minutes=90), "alice")
    assert [store.get_job(db, j.id).config["time_limit_minutes"]
            for j in (by_epochs, long, timed)] == [0.0, 0.0, 90.0]  # fmt: skip
    assert store.get_job(db, long.id).config["max_steps"] == 5000
    # The same limits do bite once demo mode is on: they were off above, not too loose.
    with pytest.raises(ValidationError, match="the demo trains on at most 1 "):
        queue_job(db, replace(tight, demo=True), tiny_config(version, max_steps=5000), "alice")


def test_a_job_stops_at_its_time_limit_keeps_its_adapter_and_succeeds(
    db, settings, tiny, tiny_model_dir, version
):
    # About 8 steps fit in 1.2 seconds here; without the limit all 200 would run (~40 s).
    max_steps = 200
    config = tiny_config(version, max_steps=max_steps, time_limit_minutes=0.02, eval_steps=0,
                         save_steps=0)  # fmt: skip
    job = queue_job(db, settings, config, "alice")
    assert Worker(settings).run_once()

    done = store.get_job(db, job.id)
    assert done.status == JobStatus.SUCCEEDED and done.error is None
    assert 1 <= done.step < max_steps and done.total_steps == max_steps
    assert done.metrics["stopped_at_time_limit"] is True
    assert done.metrics["global_step"] == done.step
    adapter = Path(done.output_dir) / ADAPTER_DIR
    assert (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / METADATA_FILE).read_text())["metrics"]["stopped_at_time_limit"]
    [variant] = [v for v in store.list_variants(db, job.id) if v.kind == "adapter"]
    assert variant.path == str(adapter) and variant.step == done.step
    assert "time limit of 0.02 minutes reached" in Path(done.log_path).read_text()


def test_a_job_within_its_time_limit_is_not_marked(db, settings, tiny, version):
    job = queue_job(db, settings, tiny_config(version, max_steps=2, time_limit_minutes=60), "a")
    assert Worker(settings).run_once()
    done = store.get_job(db, job.id)
    assert done.status == JobStatus.SUCCEEDED and done.step == 2
    assert done.metrics["stopped_at_time_limit"] is False
