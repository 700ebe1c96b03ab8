"""The Train tab's API against the real app (which starts its own worker): a job queued from
the page trains in the worker's child process and its progress is read back from SQLite;
a running job is cancelled; a bad config is refused with the field name and queues nothing."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from ftapp.arena.contestants import add_prompt_variant
from ftapp.data.importer import import_file
from ftapp.data.review import set_status_where
from ftapp.data.splits import assign_splits
from ftapp.data.versions import freeze_version
from ftapp.models.registry import bundled_base_model
from ftapp.models.tokens import ChatTokenCounter
from ftapp.store import jobs as job_store
from ftapp.store.db import open_db
from ftapp.training.config import preset
from ftapp.ui.train_tab import FIELDS
from tests.gradio_events import call_event, dependencies, signed_in_client
from tests.helpers import pc, write_jsonl
from tests.live_app import running_app

pytestmark = pytest.mark.slow
BASE = "SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, bundled_model_dir: Path):
    home = tmp_path_factory.mktemp("train-live") / "home"
    with running_app(home, models_dir) as live:
        # The dataset is prepared through the core, on the app's own database file.
        db = open_db(live.db_path)
        rows = [pc(f"What is {i} + {i}?", f"{i} + {i} = {2 * i}.") for i in range(24)]
        path = write_jsonl(home / "sums.jsonl", rows)
        import_file(db, path, "sums", count_tokens=ChatTokenCounter(bundled_model_dir),
                    max_tokens=512)  # fmt: skip
        set_status_where(db, "sums", "accepted", "test")
        assign_splits(db, "sums", (0.75, 0.25, 0.0))
        freeze_version(db, "sums", "test")
        pairs = [{"prompt": f"What is {i} + {i}?", "chosen": f"{2 * i}. Cheers!",
                  "rejected": f"{2 * i}."} for i in range(12)]  # fmt: skip
        import_file(db, write_jsonl(home / "pairs.jsonl", pairs), "pairs",
                    count_tokens=ChatTokenCounter(bundled_model_dir), max_tokens=512)  # fmt: skip
        set_status_where(db, "pairs", "accepted", "test")
        assign_splits(db, "pairs", (0.75, 0.25, 0.0))
        freeze_version(db, "pairs", "test")
        db.close()
        yield live


def hyperparameters(**overrides) -> list:
    """The form's values in FIELDS order: the CPU demo preset with overrides (unchecked, so a
    test can send what the form would let a user type)."""
    values = {**dataclasses.asdict(preset("quick CPU demo", "sums@v1")), **overrides}
    return [values[field] for field in FIELDS]


def plot_rows(plot: dict | None) -> list:
    """A plot's data rows, sent as a value or as an update that also sets its visibility."""
    plot = plot or {}
    return (plot.get("value", plot) or {}).get("data", [])


def wait_for_status(app, job_id: int, wanted: set[str], timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.connect() as conn:
            job = dict(conn.execute("SELECT * FROM jobs WHERE id = ?", [job_id]).fetchone())
        if job["status"] in wanted:
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s: {job['error']}")


def test_queue_train_and_watch(app):
    client = Client(app.url, verbose=False)
    job_id = client.predict("sums@v1", BASE, *hyperparameters(
        max_steps=3, batch_size=2, max_length=64, eval_steps=2, save_steps=2, threads=1),
        api_name="/queue_job")  # fmt: skip
    job = wait_for_status(app, job_id, {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]

    table, status, loss, _, rewards, _, variants, _, log = client.predict(
        job_id, api_name="/job_progress"
    )
    assert "succeeded" in status and "step 3/3" in status and "SFT" in status
    assert plot_rows(rewards) == []  # an SFT job reports no rewards
    assert [row[2] for row in table["data"] if row[0] == job_id] == ["succeeded"]
    plotted = [(step, kind) for step, _, kind in plot_rows(loss)]
    with app.connect() as conn:
        metrics = conn.execute("SELECT kind, step FROM job_metrics WHERE job_id = ?",
                               [job_id]).fetchall()  # fmt: skip
        names = [r["name"] for r in conn.execute(
            "SELECT name FROM model_variants WHERE job_id = ? ORDER BY id", [job_id])]  # fmt: skip
    assert [tuple(m) for m in metrics if m["kind"] == "train"] == [("train", s) for s in (1, 2, 3)]
    assert ("eval", 2) in [tuple(m) for m in metrics]
    # Evaluations every 2 steps and at the end.
    assert plotted == [(1, "train"), (2, "train"), (3, "train"), (2, "eval"), (3, "eval")]
    # A checkpoint every 2 steps and at the end, then the final adapter.
    assert names == [f"sums-v1-job{job_id}/step-2", f"sums-v1-job{job_id}/step-3",
                     f"sums-v1-job{job_id}"]  # fmt: skip
    assert [row[0] for row in variants["data"]] == names
    assert f"job #{job_id} succeeded" in log


def test_a_dpo_job_from_the_page_draws_its_rewards(app):
    client = Client(app.url, verbose=False)
    values = {
        **dataclasses.asdict(preset("preference quick CPU demo", "pairs@v1")),
        "max_steps": 2,
        "max_length": 64,
        "eval_steps": 2,
        "save_steps": 2,
        "threads": 1,
    }
    job_id = client.predict("pairs@v1", BASE, *[values[f] for f in FIELDS],
                            api_name="/queue_job")  # fmt: skip
    job = wait_for_status(app, job_id, {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]
    _, status, _, _, rewards, accuracy, _, _, _ = client.predict(job_id, api_name="/job_progress")
    assert "DPO" in status and "validation preference accuracy" in status
    assert {series for _, _, series in plot_rows(rewards)} == {"chosen", "rejected", "margin"}
    assert (2, "validation") in {(step, kind) for step, _, kind in plot_rows(accuracy)}
    # An SFT method on these pairs is refused, naming the field as the page labels it.
    with pytest.raises(AppError, match="Method: pairs@v1 is preference data"):
        client.predict("pairs@v1", BASE, *hyperparameters(), api_name="/queue_job")


def test_cancel_a_running_job(app):
    client = Client(app.url, verbose=False)
    job_id = client.predict("sums@v1", BASE, *hyperparameters(
        max_steps=500, batch_size=2, max_length=64, eval_steps=0, save_steps=0, threads=1),
        api_name="/queue_job")  # fmt: skip
    wait_for_status(app, job_id, {"running"})
    with app.connect() as conn:  # wait for training proper, past model loading
        while conn.execute("SELECT step FROM jobs WHERE id = ?", [job_id]).fetchone()[0] < 1:
            time.sleep(0.5)
    client.predict(job_id, api_name="/cancel_job")
    job = wait_for_status(app, job_id, {"cancelled", "succeeded", "failed"}, timeout=60)
    assert job["status"] == "cancelled"
    assert job["step"] < 500
    with pytest.raises(AppError, match="already cancelled"):
        client.predict(job_id, api_name="/cancel_job")


def test_a_bad_config_is_refused_with_the_field_and_queues_nothing(app):
    client = Client(app.url, verbose=False)
    with app.connect() as conn:
        before = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    # Each refusal names the field by its label on the page, and says what to do.
    with pytest.raises(AppError, match="^LoRA rank: must be between 1 and 64"):
        client.predict("sums@v1", BASE, *hyperparameters(lora_rank=500), api_name="/queue_job")
    with pytest.raises(AppError, match="^Dataset version: .*no dataset named 'missing'"):
        client.predict("missing@v1", BASE, *hyperparameters(), api_name="/queue_job")
    with pytest.raises(AppError, match="^Base model: no base model named 'gpt-9'"):
        client.predict("sums@v1", "gpt-9", *hyperparameters(), api_name="/queue_job")
    # Versions exist, none is chosen: the fix is to choose one, not to freeze one.
    with pytest.raises(AppError, match="^Dataset version: choose one of the frozen versions"):
        client.predict(None, BASE, *hyperparameters(), api_name="/queue_job")
    with app.connect() as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == before


def test_what_appeared_after_the_page_loaded_is_offered_when_a_picker_opens(
    app, bundled_model_dir: Path
):
    """Every tab fills its pickers when the page loads; a version frozen, an adapter trained
    or a contestant added since (in another tab) is offered as soon as the picker is opened
    (its focus event), without reloading the page, and what the user picked stays picked."""
    client = signed_in_client(app.url)  # the page is loaded before anything below exists
    db = open_db(app.db_path)
    try:
        path = write_jsonl(app.home / "later.jsonl", [pc("Later?", "Yes.")])
        import_file(db, path, "later", count_tokens=ChatTokenCounter(bundled_model_dir),
                    max_tokens=512)  # fmt: skip
        set_status_where(db, "later", "accepted", "test")
        assign_splits(db, "later", (1.0, 0.0, 0.0))
        freeze_version(db, "later", "test")
        adapter = str(app.home / "adapters" / "later")
        job_store.add_variant(db, {"name": "later-adapter", "kind": "adapter", "path": adapter,
                                   "base_model": BASE})  # fmt: skip
        add_prompt_variant(db, bundled_base_model(app.home / "models"), "later-prompt",
                           "Be brief.", user="test")  # fmt: skip
    finally:
        db.close()
    wanted = {
        "train_versions": "later@v1", "session_versions": "later@v1", "eval_versions": "later@v1",
        "playground_models": "later-adapter", "deploy_models": "later-adapter",
        "export_models": "later-adapter", "session_contestant_names": "later-prompt",
        "eval_contestant_names": "later-prompt",
    }  # fmt: skip
    by_name = {d["api_name"]: d for d in dependencies(client)}
    for api_name, new_choice in wanted.items():
        result = call_event(client, by_name[api_name]["id"], [])
        assert result.success, (api_name, result.error)
        (update,) = result.output["data"]
        assert new_choice in [label for label, _ in update["choices"]], api_name
        assert "value" not in update, api_name
