"""Small pieces the app shows: the log tail, the ETA, the reason a job failed or ended."""

import signal
from dataclasses import replace
from pathlib import Path

import pytest

from ftapp.errors import ValidationError
from ftapp.processes import exit_reason
from ftapp.records import JobStatus
from ftapp.training.child import describe_failure
from ftapp.training.jobs import eta_seconds, log_tail, queue_job
from ftapp.training.trainer import last_complete_checkpoint
from tests.training.conftest import tiny_config


def test_log_tail_shows_what_a_terminal_would(db, settings, tiny, version):
    job = queue_job(db, settings, tiny_config(version), "alice")
    assert log_tail(job) == ""  # no log yet
    with open(job.log_path, "wb") as log:
        log.write(b"loading\n" + b"".join(b"\r 50%% step %d" % i for i in range(100)) + b"\n")
        log.write(b"\x1b[Adone \xff\n")
    assert log_tail(job).splitlines() == ["loading", " 50% step 99", "done \ufffd"]
    assert log_tail(job, lines=1) == "done \ufffd"


def test_eta_only_for_a_running_job_with_a_known_pace(db, settings, tiny, version):
    job = queue_job(db, settings, tiny_config(version), "alice")
    running = replace(job, status=JobStatus.RUNNING, step=10, total_steps=40)
    assert eta_seconds(running, 2.0) == 60.0
    assert eta_seconds(running, None) is None
    assert eta_seconds(replace(running, status=JobStatus.SUCCEEDED), 2.0) is None
    assert eta_seconds(replace(running, total_steps=None), 2.0) is None


def test_failure_reasons_are_one_readable_line():
    assert describe_failure(MemoryError()).startswith("out of memory (MemoryError): lower")
    oom = type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory. Tried 2 GiB")
    assert describe_failure(oom).startswith("out of memory (OutOfMemoryError)")
    assert describe_failure(ValidationError("base_model: gone")) == "base_model: gone"
    assert describe_failure(ValueError("first line\nsecond line")) == "ValueError: first line"
    assert describe_failure(KeyError()) == "KeyError"
    assert len(describe_failure(RuntimeError("x" * 2000))) < 600


def testexit_reasons_name_the_signal():
    assert exit_reason(-signal.SIGKILL) == "signal SIGKILL (often the out-of-memory killer)"
    assert exit_reason(-signal.SIGTERM) == "signal SIGTERM"
    assert exit_reason(1) == "exit status 1"


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        ({}, None),
        ({"checkpoint-2": True, "checkpoint-10": True, "checkpoint-4": True}, "checkpoint-10"),
        ({"checkpoint-2": True, "checkpoint-4": False}, "checkpoint-2"),  # 4 cut short
        ({"checkpoint-4": False}, None),
        ({"checkpoint-2": True, "adapter": True, "checkpoint-x": True}, "checkpoint-2"),
    ],
)
def test_resume_picks_the_newest_complete_checkpoint(tmp_path, folders, expected):
    for name, complete in folders.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_model.safetensors").write_bytes(b"")
        if complete:
            (tmp_path / name / "trainer_state.json").write_text("{}")
    found = last_complete_checkpoint(str(tmp_path))
    assert found == (str(tmp_path / expected) if expected else None)
    assert last_complete_checkpoint(str(tmp_path / "missing")) is None


def test_child_command_spans_gpus_through_accelerate():
    import sys

    from ftapp.training.runs import child_command

    folder = Path("/home/ftapp/adapters/job-7/run")
    assert child_command(folder) == [sys.executable, "-m", "ftapp.training.child", str(folder)]
    assert child_command(folder, gpus=4) == [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "4",
        "-m", "ftapp.training.child", str(folder)]  # fmt: skip
