"""Faults, end to end: benchmarks/faults.py as a real subprocess, with a small seeded schedule
that kills -9 each of the four processes once under load -- the training child, the worker,
the vLLM server and the web app -- and restarts only the web app (what the README says). The
test reads the script's JSON report and the database it left behind: every kill survived, no
acknowledged vote or label lost, every job ended (the one whose training process was killed
claimed again), nothing left running."""

import json
import signal
import sqlite3
import subprocess
import sys

import psutil
import pytest

from tests.live_app import REPO

pytestmark = pytest.mark.slow

TARGETS = ["app", "child", "vllm", "worker"]
GUARD_S = 1800  # a guard against hanging, not a speed check


def processes_of(home) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["status"]):
        try:
            if process.environ().get("FTAPP_HOME") == str(home) and (
                process.info["status"] != psutil.STATUS_ZOMBIE
            ):
                found.append(process)
        except psutil.Error:
            continue
    return found


def test_every_kill_is_survived_and_nothing_acknowledged_is_lost(tmp_path, models_dir):
    home, report_path = tmp_path / "home", tmp_path / "report.json"
    command = [
        sys.executable, "benchmarks/faults.py", "--kills-per-target", "1", "--seed", "0",
        "--gap", "5", "15", "--train-steps", "16", "--session-prompts", "400",
        "--inbox", "400", "--models-dir", str(models_dir), "--home", str(home),
        "--json", str(report_path),
    ]  # fmt: skip
    script = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        output, _ = script.communicate(timeout=GUARD_S)
    except subprocess.TimeoutExpired:
        script.send_signal(signal.SIGTERM)  # it kills every process it started, then exits
        output, _ = script.communicate(timeout=120)
        pytest.fail(f"faults.py still ran after {GUARD_S} s:\n{output[-5000:]}")
    assert report_path.exists(), output[-5000:]
    report = json.loads(report_path.read_text())
    assert report["problems"] == [] and script.returncode == 0, output[-5000:]

    # Each target killed once, while it existed, and the product whole again afterwards.
    assert sorted(kill["target"] for kill in report["kills"]) == TARGETS
    assert all(kill["pid"] and kill["survived"] for kill in report["kills"]), report["kills"]
    assert report["total"] == {"tried": 4, "survived": 4}
    # The load ran, and every acknowledged vote and label is stored.
    for name in ("ann", "bob", "probe"):
        assert report["votes"][name]["acknowledged"] > 0 and not report["votes"][name]["missing"]
    assert report["labels"]["admin"]["acknowledged"] > 0
    assert not report["labels"]["admin"]["missing"]

    # The database, read here rather than trusted from the report.
    conn = sqlite3.connect(home / "ftapp.db")
    conn.row_factory = sqlite3.Row
    try:
        jobs = {row["id"]: dict(row) for row in conn.execute("SELECT * FROM jobs")}
        votes = dict(conn.execute("SELECT reviewer, COUNT(*) FROM votes GROUP BY reviewer"))
        labelled = conn.execute(
            "SELECT COUNT(*) FROM examples e JOIN datasets d ON d.id = e.dataset_id "
            "WHERE d.name = 'inbox' AND e.reviewed_by = 'admin'"
        ).fetchone()[0]
    finally:
        conn.close()
    assert jobs and all(job["status"] in ("succeeded", "failed") for job in jobs.values()), jobs
    assert all(job["error"] for job in jobs.values() if job["status"] == "failed")
    assert any(job["status"] == "succeeded" for job in jobs.values())
    [child_kill] = [kill for kill in report["kills"] if kill["target"] == "child"]
    assert jobs[child_kill["job_id"]]["attempts"] >= 2  # claimed again after the kill
    for name, row in report["votes"].items():
        assert votes.get(name, 0) >= row["acknowledged"]
    assert labelled >= report["labels"]["admin"]["acknowledged"]
    assert not processes_of(home)
