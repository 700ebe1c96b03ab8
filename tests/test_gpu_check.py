"""benchmarks/gpu_check.sh on this CPU: its --dry-run goes through every step at toy size and
writes the one report with the sections and figures the GPU run fills in; a missing wheels
folder fails the run with a message naming it, and the report still says what happened; the
stand-in it builds where the bundled model's weights can't travel is a model ftapp loads as
the bundled one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GPU_CHECK = REPO / "benchmarks" / "gpu_check.sh"
STEPS = ["install", "versions", "model", "gpu-tests", "bench-bundled", "bench-1b"]


def run_check(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(GPU_CHECK), *args], cwd=REPO, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHON": sys.executable, **env},
    )  # fmt: skip


def steps_of(out: Path) -> list[list[str]]:
    return [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()]


@pytest.mark.slow
def test_the_dry_run_goes_through_every_step_and_reports_the_figures(home, tmp_path):
    wheels, out = tmp_path / "wheels", tmp_path / "out"
    wheels.mkdir()
    done = run_check("--dry-run", str(wheels), str(out), FTAPP_HOME=str(home))
    assert done.returncode == 0, done.stdout + done.stderr
    assert [(row[0], row[1]) for row in steps_of(out)] == [(name, "ok") for name in STEPS]
    report = (out / "gpu_check.md").read_text()
    for heading in ["# GPU check: this CPU", "## Steps", "## Machine and versions",
                    "## GPU tests", "## Training throughput"]:  # fmt: skip
        assert heading in report, heading
    assert "Result: every step that ran passed" in report
    assert f"Python {sys.version.split()[0]} ({sys.executable})" in report

    # The gpu tests were collected and each skipped for lack of CUDA.
    cases = list(ET.parse(out / "gpu-tests.xml").getroot().iter("testcase"))
    assert len(cases) >= 3
    for case in cases:
        skipped = case.find("skipped")
        assert skipped is not None and "no CUDA" in skipped.get("message"), case.get("name")
    assert f"passed 0, failed 0, skipped {len(cases)}, errors 0" in report

    # A training figure for the bundled model and for the model in the 1B run's place.
    for name, model, sizes in [("bundled", "SmolLM2-135M-Instruct", (130e6, 140e6)),
                               ("1b", "random weights, tiny shape", (1e6, 5e6))]:  # fmt: skip
        data = json.loads((out / f"bench-{name}.json").read_text())
        assert data["device"] == "cpu" and data["model"] == model
        assert sizes[0] < data["parameters"] < sizes[1]
        [run] = data["runs"]
        assert run["name"] == "ftapp 8 rows/fwd" and run["steps"] == 1 and run["real_tokens"] > 0
        assert run["tokens_per_s"] > 0 and 0 < run["mfu"] < 1
        assert f"| {model} | {data['parameters'] / 1e6:,.1f} M | ftapp 8 rows/fwd | " in report
        assert f"{run['tokens_per_s']:,.1f}" in report


def test_a_missing_wheels_folder_fails_the_run_naming_it(tmp_path):
    missing, out = tmp_path / "no-wheels", tmp_path / "out"
    done = run_check("--dry-run", str(missing), str(out))
    assert done.returncode == 1
    assert f"WHEELS_DIR {missing} does not exist" in done.stderr
    assert "pip download" in done.stderr
    # The report says what ran: the versions step runs anyway, the rest waits on the install.
    statuses = {row[0]: (row[1], row[3]) for row in steps_of(out)}
    assert statuses["install"][0] == "failed" and statuses["versions"][0] == "ok"
    for name in ["model", "gpu-tests", "bench-bundled", "bench-1b"]:
        assert statuses[name] == ("skipped", "not run: install failed")
    report = (out / "gpu_check.md").read_text()
    assert "**1 step(s) failed** (install)" in report and "## Machine and versions" in report


def test_bad_arguments_print_the_usage(tmp_path):
    done = run_check("--dry-run", str(tmp_path))
    assert done.returncode == 2 and "usage: benchmarks/gpu_check.sh" in done.stderr
    done = run_check("--fast", str(tmp_path), str(tmp_path))
    assert done.returncode == 2 and "unknown option --fast" in done.stderr


def test_the_stand_in_is_a_bundled_model_of_the_files_shape(bundled_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftapp.models.bundled import BUNDLED_MODEL, is_prepared, prepare_bundled_model

    files = tmp_path / "bundled-model-files"
    files.mkdir()
    for name in ["generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja"]:  # fmt: skip
        shutil.copy(bundled_model_dir / name, files / name)
    # The bundled model's config, made tiny so the test builds it in a moment.
    config = json.loads((bundled_model_dir / "config.json").read_text())
    config.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, head_dim=16,
                  num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    (files / "config.json").write_text(json.dumps(config))
    models = tmp_path / "models"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "standin", str(models),
         str(files)], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    assert is_prepared(models) and prepare_bundled_model(models) == models / BUNDLED_MODEL
    folder = models / BUNDLED_MODEL
    marker = json.loads((folder / "ftapp-model.json").read_text())
    assert marker["name"] == BUNDLED_MODEL and marker["source"].startswith("stand-in")
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert model.config.vocab_size == 49152 and model.config.tie_word_embeddings
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    original = AutoTokenizer.from_pretrained(str(bundled_model_dir))
    assert tokenizer.chat_template == original.chat_template
    chat = [{"role": "user", "content": "Hello there"}]
    assert tokenizer.apply_chat_template(chat) == original.apply_chat_template(chat)
