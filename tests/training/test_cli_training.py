"""`ftapp train | jobs | worker` in real subprocesses: queue and wait with a worker running,
presets as YAML, DPO going on from an SFT adapter as the UI does it, refusals with exit status
2 naming the field."""

import json
import signal
import subprocess
import sys

import yaml

from ftapp.training.config import config_from_yaml, preset
from tests.helpers import make_version
from tests.training.conftest import preference_rows, tiny_config


def ftapp(env, *args):
    return subprocess.run([sys.executable, "-m", "ftapp.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip


def test_train_and_wait_with_a_worker_running(db, settings, tiny, version, env, tmp_path, reaper):
    path = tmp_path / "job.yaml"
    path.write_text(tiny_config(version, max_steps=2, name="from-cli").to_yaml())
    worker = start_worker(env, tmp_path, reaper)

    result = ftapp(env, "train", path, "--wait")
    assert result.returncode == 0, result.stderr
    assert "queued job #1 from-cli" in result.stderr
    assert result.stdout.strip() == "job #1 from-cli: succeeded"

    shown = ftapp(env, "jobs", "show", "1", "--json")
    assert shown.returncode == 0, shown.stderr
    job = json.loads(shown.stdout)
    assert job["status"] == "succeeded" and job["attempts"] == 1 and job["step"] == 2
    assert [row["step"] for row in job["metrics_rows"] if row["kind"] == "train"] == [1, 2]
    assert [v["name"] for v in job["variants"]] == ["from-cli/step-2", "from-cli"]
    listing = json.loads(ftapp(env, "jobs", "list", "--json").stdout)
    assert [(j["id"], j["status"]) for j in listing] == [(1, "succeeded")]

    worker.send_signal(signal.SIGTERM)  # stops cleanly between jobs
    assert worker.wait(timeout=60) == 0


def start_worker(env, tmp_path, reaper) -> subprocess.Popen:
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "ftapp.cli", "worker"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    reaper.append(worker)
    return worker


def test_dpo_from_an_sft_adapter_from_a_terminal(db, settings, tiny, version, env, tmp_path,
                                                 reaper, count_tokens):  # fmt: skip
    pairs = make_version(db, tmp_path, count_tokens, name="prefs", rows=preference_rows(10))
    sft = tmp_path / "sft.yaml"
    sft.write_text(tiny_config(version, max_steps=2, name="sft-start").to_yaml())
    worker = start_worker(env, tmp_path, reaper)
    assert ftapp(env, "train", sft, "--wait").returncode == 0

    # The preference preset as YAML, edited as a user would: the tiny model, a short run, the
    # SFT adapter to go on from.
    printed = ftapp(env, "train", "--preset", "preference quick CPU demo",
                    "--dataset-version", pairs)  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    values = yaml.safe_load(printed.stdout)
    assert (values["method"], values["learning_rate"]) == ("dpo", 2e-4)
    values.update(base_model="tiny", start_adapter="sft-start", max_steps=2, eval_steps=2,
                  save_steps=2, name="dpo-cli", precision="fp32", threads=1)  # fmt: skip
    dpo = tmp_path / "dpo.yaml"
    dpo.write_text(yaml.safe_dump(values))
    result = ftapp(env, "train", dpo, "--wait")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "job #2 dpo-cli: succeeded"
    job = json.loads(ftapp(env, "jobs", "show", "2", "--json").stdout)
    assert (job["config"]["method"], job["config"]["start_adapter"]) == ("dpo", "sft-start")
    train_rows = [row for row in job["metrics_rows"] if row["kind"] == "train"]
    assert len(train_rows) == 2 and all(r["rewards_margin"] is not None for r in train_rows)

    # DPO on conversations is refused before anything is queued, naming the field.
    values.update(dataset_version=version)
    dpo.write_text(yaml.safe_dump(values))
    refused = ftapp(env, "train", dpo)
    assert refused.returncode == 2 and "method: dpo learns from preference data" in refused.stderr
    assert db["jobs"].count == 2
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0


def test_preset_prints_yaml_that_loads_back(env):
    result = ftapp(env, "train", "--preset", "quick CPU demo", "--dataset-version", "x@v1")
    assert result.returncode == 0, result.stderr
    assert config_from_yaml(result.stdout) == preset("quick CPU demo", "x@v1")


def test_bad_configs_exit_2_naming_the_field_and_queue_nothing(db, settings, tiny, version,
                                                                env, tmp_path):  # fmt: skip
    good = tiny_config(version).to_dict()
    cases = [
        ({**good, "lora_rank": 999}, "lora_rank: must be between 1 and 64"),
        ({**good, "lora_rnak": 8}, "unknown config field 'lora_rnak'"),
        ({**good, "batch_size": "many"}, "batch_size: expected int"),
        ({**good, "dataset_version": "nope@v1"}, "dataset_version:"),
        ({**good, "base_model": "missing"}, "base_model: no base model named 'missing'"),
    ]
    for number, (values, message) in enumerate(cases):
        path = tmp_path / f"bad-{number}.yaml"
        path.write_text(yaml.safe_dump(values))
        result = ftapp(env, "train", path)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
    missing = ftapp(env, "train", tmp_path / "nowhere.yaml")
    assert missing.returncode == 2 and "file not found" in missing.stderr
    assert db["jobs"].count == 0


def test_cancel_and_show_from_a_terminal(db, settings, tiny, version, env, tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(tiny_config(version).to_yaml())
    queued = ftapp(env, "train", path, "--json")
    assert queued.returncode == 0, queued.stderr
    job_id = json.loads(queued.stdout)["id"]
    cancelled = ftapp(env, "jobs", "cancel", job_id)
    assert cancelled.returncode == 0 and cancelled.stdout.strip() == f"job #{job_id}: cancelled"
    again = ftapp(env, "jobs", "cancel", job_id)
    assert again.returncode == 2 and "already cancelled" in again.stderr
    assert db["jobs"].get(job_id)["status"] == "cancelled"
    unknown = ftapp(env, "jobs", "show", 99)
    assert unknown.returncode == 2 and "no training job #99" in unknown.stderr
