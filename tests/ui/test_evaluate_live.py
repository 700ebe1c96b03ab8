"""The Evaluate tab's API against the real app in a subprocess (gradio_client calls what the
page's buttons call): an evaluation started with an uploaded examples file and a Python check
file is generated and scored in the app's background thread; the report, an example side by
side (model text escaped) and the CSV export come back; on a preference version's test split
every contestant gets its preference accuracy; bad input is refused and writes nothing.
Generation is the echo backend: this is about the plumbing (the real backend is exercised in
tests/evaluation/test_run_on_vllm.py)."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from ftapp.data.from_rows import dataset_from_rows
from ftapp.store.db import open_db
from tests.arena.conftest import running_arena_app
from tests.helpers import write_jsonl
from tests.live_app import LiveApp

pytestmark = pytest.mark.slow
REPORT_VIEW = ("summary", "table", "plot", "extremes")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path):
    home = tmp_path_factory.mktemp("evaluate") / "home"
    # The upload-to-export walk uses a Python check file: this installation allows them.
    with running_arena_app(home, models_dir, extra_env={"FTAPP_CODE_CHECKS": "1"}) as live:
        yield live


def start(client: Client, name: str, examples: Path | None, check: Path | None = None, **fields):
    """/eval_start with the form's defaults, examples from an uploaded file (or, with
    examples=None and the fields, a version's split)."""
    values = {
        "name": name, "contestants": ["base", "pirate"], "source": "an uploaded file",
        "version": None, "split": "test", "file": handle_file(str(examples)) if examples else None,
        "metrics": ["exact_match", "rouge_l"], "regex": "", "ready": ["pep8"],
        "python_check": handle_file(str(check)) if check else None, "command": "",
        "command_input": "stdin", "judge_url": "", "judge_model": "", "temperature": 0,
        "max_new_tokens": 64,
    }  # fmt: skip
    values.update(fields)
    return client.predict(*values.values(), api_name="/eval_start")


def wait_done(app: LiveApp, name: str) -> dict:
    for _ in range(300):  # a guard against hanging, not a speed check
        run = app.query("SELECT * FROM eval_runs WHERE name = ?", [name])[0]
        if run["status"] not in ("generating", "scoring"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {name} did not finish:\n{app.log_tail()}")


def test_an_evaluation_from_upload_to_export(app: LiveApp, tmp_path: Path):
    # The echo backend answers "[base] <prompt>": the first two references are exactly that.
    examples = write_jsonl(tmp_path / "examples.jsonl", [
        {"prompt": "alpha", "reference": "[base] alpha"},
        {"prompt": "beta", "reference": "[base] beta"},
        {"prompt": "<script>alert(1)</script>", "reference": "=cmd|' /C calc'!A0"},
    ])  # fmt: skip
    check = tmp_path / "mentions_base.py"
    check.write_text("def check(answer, reference, prompt):\n    return 'base' in answer\n")
    client = Client(app.url, verbose=False, download_files=str(tmp_path / "downloads"))
    message, chosen = start(client, "echo eval", examples, check)
    assert chosen == "echo eval" and "6 answers" in message
    run = wait_done(app, "echo eval")
    assert run["status"] == "done" and run["created_by"] == "admin", run["error"]
    # The check file was kept in ftapp's home (the upload's temporary copy may go away).
    kept = list((app.home / "checks").glob("mentions_base-*.py"))
    assert len(kept) == 1 and kept[0].read_text() == check.read_text()

    report = dict(zip(REPORT_VIEW, client.predict("echo eval", api_name="/eval_report"),
                      strict=True))  # fmt: skip
    rows = {(r[0], r[1]): r for r in report["table"]["data"]}
    assert rows[("exact_match", "base")][2] == pytest.approx(2 / 3, abs=1e-4)  # rounded
    assert rows[("mentions_base", "pirate")][2] == 1.0  # the user's check, on every answer
    assert ("pep8", "base") in rows
    assert "baseline **base**" in report["summary"]

    shown = client.predict("echo eval", 3, api_name="/eval_example")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown and "<script>" not in shown

    exported = client.predict("echo eval", api_name="/eval_export_csv")
    records = list(csv.DictReader(Path(exported).read_text(encoding="utf-8").splitlines()))
    assert len(records) == 6 and {r["contestant"] for r in records} == {"base", "pirate"}
    assert {r["reference"] for r in records if r["position"] == "3"} == {"'=cmd|' /C calc'!A0"}


def test_preference_accuracy_on_a_preference_versions_pairs(app: LiveApp, count_tokens):
    # Echo finds an answer likelier the more of its words it would have said itself
    # ("[model] <prompt>"): every contestant prefers these chosen answers.
    pairs = [{"prompt": f"word {i}", "chosen": f"word {i}", "rejected": f"zebra quilt {i}"}
             for i in range(6)]  # fmt: skip
    db = open_db(app.db_path)
    try:
        version = dataset_from_rows(db, "live-pairs", {"pairs.jsonl": pairs}, description="",
                                    user="admin", count_tokens=count_tokens, max_tokens=512,
                                    ratios=(0.01, 0.0, 0.99))  # fmt: skip
    finally:
        db.close()
    client = Client(app.url, verbose=False)
    message, _ = start(client, "prefs live", None, source="a dataset version's split",
                       version=version.label, ready=[],
                       metrics=["rouge_l", "preference_accuracy"])  # fmt: skip
    assert "12 answers" in message
    run = wait_done(app, "prefs live")
    assert run["status"] == "done" and run["error"] is None
    report = dict(zip(REPORT_VIEW, client.predict("prefs live", api_name="/eval_report"),
                      strict=True))  # fmt: skip
    rows = {(r[0], r[1]): r for r in report["table"]["data"]}
    for contestant in ("base", "pirate"):
        row = rows[("preference_accuracy", contestant)]
        assert row[2] == 1.0 and row[5] == 6 and "above chance" in row[9]
    assert "Preference accuracy 1.00, **above chance**" in report["summary"]


def test_bad_evaluations_are_refused_and_write_nothing(app: LiveApp, tmp_path: Path):
    examples = write_jsonl(tmp_path / "ok.jsonl", [{"prompt": "alpha", "reference": "a"}])
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "fine"}\n{"prompt": \n')
    client = Client(app.url, verbose=False)
    before = app.query("SELECT COUNT(*) AS n FROM eval_runs")[0]["n"]
    with pytest.raises(AppError, match="at least two contestants"):
        start(client, "one", examples, contestants=["base"])
    with pytest.raises(AppError, match="line 2"):
        start(client, "broken", broken)
    with pytest.raises(AppError, match="both the judge's URL and its model"):
        start(client, "judge", examples, judge_url="http://127.0.0.1:9")
    with pytest.raises(AppError, match="unknown metric|accuracy"):
        start(client, "metric", examples, metrics=["accuracy"])
    with pytest.raises(AppError, match="preference_accuracy: .* no preference pairs"):
        start(client, "no pairs", examples, metrics=["preference_accuracy"])
    with pytest.raises(AppError, match="choose a run first"):
        client.predict(None, api_name="/eval_report")
    assert app.query("SELECT COUNT(*) AS n FROM eval_runs")[0]["n"] == before
