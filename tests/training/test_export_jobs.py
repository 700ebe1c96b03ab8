"""Export jobs (merges and Hub pushes) run by the worker: a real `ftapp worker` process merges
a tiny LoRA adapter and writes the job's rows; a broken adapter fails with its reason and the
log; a job whose process died with its worker is failed, not left running; bad input is
refused when it is queued, with nothing written; and `ftapp export merge` works with no worker
running (it runs the job itself, with the same row)."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ftapp.deploy.export_jobs import cancel_export, describe, queue_merge, queue_push
from ftapp.errors import Conflict, NotFound, ValidationError
from ftapp.store import export_jobs as store
from ftapp.store import jobs as job_store
from ftapp.store.db import connect
from ftapp.store.export_jobs import ExportAction, ExportStatus
from ftapp.store.exports import exports_of
from ftapp.training.worker import Worker
from tests.training.conftest import TINY_MODEL, wait_for


def tiny_adapter(folder: Path, tiny_model_dir: Path) -> Path:
    """A LoRA adapter for the tiny model with random (non-zero) weights: merged, it changes the
    attention weights, so a merge that did not apply it shows."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False)  # fmt: skip
    get_peft_model(model, config).save_pretrained(str(folder))
    return folder


@pytest.fixture
def adapter(db, tiny, tiny_model_dir, tmp_path) -> str:
    """The tiny adapter registered as model variant "tiny-lora"; its name."""
    path = tiny_adapter(tmp_path / "tiny-lora", tiny_model_dir)
    job_store.add_variant(db, {"name": "tiny-lora", "kind": "adapter", "path": str(path),
                               "base_model": TINY_MODEL})  # fmt: skip
    return "tiny-lora"


def export_job(settings, job_id: int):
    with closing(connect(settings.db_path)) as db:
        return store.get_export_job(db, job_id)


def q_proj(folder: Path):
    from safetensors.torch import load_file

    weights = load_file(str(folder / "model.safetensors"))
    return next(v for k, v in weights.items() if k.endswith("layers.0.self_attn.q_proj.weight"))


def test_a_worker_process_merges_an_adapter_and_records_the_job(
    db, settings, adapter, tiny_model_dir, env, reaper, tmp_path
):
    job = queue_merge(db, settings, adapter, "ann")
    assert (job.status, job.action, job.model, job.created_by) == (
        ExportStatus.QUEUED, ExportAction.MERGE, adapter, "ann")  # fmt: skip
    assert job.log_path == str(settings.logs_dir / f"export-{job.id}.log")

    with open(tmp_path / "worker.log", "ab") as log:
        worker = subprocess.Popen([sys.executable, "-m", "ftapp.cli", "worker"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    reaper.append(worker)
    done = wait_for(lambda: (j := export_job(settings, job.id)).status.is_finished and j,
                    "the worker to finish the merge")  # fmt: skip
    worker.terminate()
    assert worker.wait(timeout=60) == 0

    out = settings.exports_dir / "tiny-lora-merged"
    assert done.status == ExportStatus.SUCCEEDED, (done.error, Path(done.log_path).read_text())
    assert (done.result_path, done.result_url, done.error) == (str(out), None, None)
    assert done.worker_id.endswith(f":{worker.pid}") and done.child_pid
    assert done.started_at <= done.heartbeat_at <= done.finished_at
    assert describe(done) == f"merged tiny-lora into {out}"
    assert "export job #1: merging tiny-lora" in Path(done.log_path).read_text()
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    assert not q_proj(out).equal(q_proj(tiny_model_dir))  # the adapter is in the weights
    assert [(r["kind"], r["target"], r["created_by"]) for r in exports_of(db, adapter)] == [
        ("merged", str(out), "ann")]  # fmt: skip

    # The folder is taken now: a second merge into it is refused before a row is written.
    with pytest.raises(Conflict, match="already exists and is not empty"):
        queue_merge(db, settings, adapter, "ann")
    assert db["export_jobs"].count == 1


def test_a_broken_adapter_fails_with_its_reason_and_the_worker_goes_on(
    db, settings, adapter, tmp_path
):
    broken = tmp_path / "broken"
    shutil.copytree(Path(job_store.get_variant(db, adapter).path), broken)
    (broken / "adapter_model.safetensors").write_bytes(b"\x00\x01 not safetensors " * 64)
    job_store.add_variant(db, {"name": "broken", "kind": "adapter", "path": str(broken),
                               "base_model": TINY_MODEL})  # fmt: skip
    bad = queue_merge(db, settings, "broken", "ann")
    good = queue_merge(db, settings, adapter, "ann", out_dir=tmp_path / "merged")

    worker = Worker(settings)
    assert worker.run_export_once()
    failed = store.get_export_job(db, bad.id)
    assert failed.status == ExportStatus.FAILED and failed.finished_at
    assert "can't apply the adapter of 'broken'" in failed.error and "\n" not in failed.error
    assert failed.error in Path(failed.log_path).read_text()
    assert not (settings.exports_dir / "broken-merged").exists() and exports_of(db, "broken") == []

    assert worker.run_export_once()  # the same worker, the next job
    done = store.get_export_job(db, good.id)
    assert done.status == ExportStatus.SUCCEEDED and done.result_path == str(tmp_path / "merged")
    assert not worker.run_export_once()  # nothing left


def test_a_job_whose_process_died_with_its_worker_is_failed_not_left_running(db, settings,
                                                                             adapter):  # fmt: skip
    job = queue_merge(db, settings, adapter, "ann")
    claimed = store.claim_next_export_job(db, "lost-host:1")
    assert claimed.id == job.id and claimed.status == ExportStatus.RUNNING
    assert store.claim_next_export_job(db, "other-host:2") is None  # never taken twice
    long_ago = (datetime.now(UTC) - timedelta(minutes=10)).isoformat(timespec="milliseconds")
    db["export_jobs"].update(job.id, {"heartbeat_at": long_ago})

    assert not Worker(settings).run_export_once()  # it recovers it, and has nothing to run
    lost = store.get_export_job(db, job.id)
    assert lost.status == ExportStatus.FAILED and lost.finished_at
    assert lost.error.startswith(f"no heartbeat since {long_ago}")


def test_a_job_nobody_takes_asks_whether_a_worker_is_running(db, settings, adapter):
    job = queue_merge(db, settings, adapter, "ann")
    assert describe(store.get_export_job(db, job.id)).endswith(": queued")
    long_ago = (datetime.now(UTC) - timedelta(minutes=2)).isoformat(timespec="milliseconds")
    db["export_jobs"].update(job.id, {"created_at": long_ago})
    line = describe(store.get_export_job(db, job.id))
    assert "still queued after 120 s: is a worker running?" in line


def test_bad_input_is_refused_when_queued_and_nothing_is_written(
    db, settings, adapter, monkeypatch, tmp_path
):
    with pytest.raises(NotFound, match="no model variant named 'nope'"):
        queue_merge(db, settings, "nope", "ann")
    with pytest.raises(ValidationError, match="base model itself"):
        queue_merge(db, settings, "base", "ann")
    for repo_id in ("not a repo", "no-owner", "a/b/c", ""):
        with pytest.raises(ValidationError, match="owner/name"):
            queue_push(db, settings, adapter, repo_id, "ann", token="t")
    with pytest.raises(NotFound, match="no model variant named 'nope'"):
        queue_push(db, settings, "nope", "ann/repo", "ann", token="t")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-login"))  # no saved `hf auth login`
    with pytest.raises(ValidationError, match="no Hugging Face token"):
        queue_push(db, settings, adapter, "ann/repo", "ann")
    assert db["export_jobs"].count == 0
    assert not (settings.home / "export-tokens").exists()


def test_a_token_typed_in_stays_out_of_the_database_and_cancelling_removes_it(
    db, settings, adapter
):
    job = queue_push(db, settings, adapter, "ann/repo", "ann", token="hf_secret_value")
    token = store.token_path(settings.home, job.id)
    assert token.read_text() == "hf_secret_value"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert "hf_secret_value" not in str(list(db["export_jobs"].rows))
    cancelled = cancel_export(db, settings, job.id)
    assert cancelled.status == ExportStatus.CANCELLED and not token.exists()
    with pytest.raises(Conflict, match="only a queued job can be cancelled"):
        cancel_export(db, settings, job.id)
    assert not Worker(settings).run_export_once()  # a cancelled job is never run


def test_export_merge_from_a_terminal_runs_the_job_itself_without_a_worker(
    db, settings, adapter, env, tmp_path
):
    out = tmp_path / "from-cli"
    done = subprocess.run(
        [sys.executable, "-m", "ftapp.cli", "export", "merge", adapter, "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"merged {adapter} into {out}"
    assert "queued export job #1" in done.stderr and "merging tiny-lora" in done.stderr
    (job,) = store.list_export_jobs(db)
    assert job.status == ExportStatus.SUCCEEDED and job.result_path == str(out)
    assert job.worker_id.startswith("cli:")  # the command ran it, not a worker
    assert (out / "config.json").is_file()

    # A failure is the job's reason on one line, status 2, and the row says so too.
    again = subprocess.run(
        [sys.executable, "-m", "ftapp.cli", "export", "merge", "nope"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 2 and "no model variant named 'nope'" in again.stderr
    assert db["export_jobs"].count == 1
