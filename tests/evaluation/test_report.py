"""The report of an evaluation run, from the database: means with seeded bootstrap
intervals, paired differences to the baseline with a verdict, the examples that moved most,
one example side by side, the results as CSV and JSONL (formulas neutralised), and
`ftapp eval report --json` giving exactly the core's numbers."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from ftapp.arena.prompts import Prompt
from ftapp.errors import NotFound, ValidationError
from ftapp.evaluation.report import build_report, estimate, example_detail, write_results
from ftapp.evaluation.runs import create_run
from tests.evaluation.conftest import generate_all, say_prompts


def _done_run(services, prompts=None, contestants=("base", "concise", "pirate")):
    with services.db() as db:
        run = create_run(
            db, services.served_base, name="r", prompts=prompts or say_prompts(6),
            source="test prompts", contestants=list(contestants), user="admin",
        )  # fmt: skip
    generate_all(services)
    return run


def test_estimate_is_the_mean_with_a_percentile_interval():
    values = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    result = estimate(values)
    assert result.mean == pytest.approx(0.7) and result.n == 10
    assert 0.3 <= result.low < 0.7 < result.high <= 1.0
    assert estimate(values) == result  # seeded: the same numbers every time
    # More of the same data: a narrower interval around the same mean.
    wide, narrow = result, estimate(values * 10)
    assert narrow.high - narrow.low < wide.high - wide.low
    assert estimate([0.5] * 4) == type(result)(0.5, 0.5, 0.5, 4)  # no spread, no width
    assert estimate([0.2]).low is None  # one value has no interval
    assert estimate([]).mean is None


def test_the_report_compares_each_contestant_with_the_baseline(eval_services):
    _done_run(eval_services)
    with eval_services.db() as db:
        report = build_report(db, "r")
    base, concise = report.row("exact_match", "base"), report.row("exact_match", "concise")
    assert (base.value.mean, concise.value.mean) == (0.0, 1.0)
    assert base.vs_baseline is None and base.verdict == ""
    assert concise.vs_baseline.mean == 1.0 and concise.verdict == "better"
    assert concise.value.n == 6 and concise.vs_baseline.n == 6
    # Lengths are described, not judged: "word0" is shorter than "I do not know."
    assert report.row("words", "concise").verdict == "shorter"
    assert report.metrics[: len(report.run.checks["metrics"])] == report.run.checks["metrics"]
    assert "latency_ms" in report.metrics
    # The examples ranked by a graded reference metric; every one gained the same here.
    assert report.key_metric == "rouge_l"
    assert [d.difference for d in report.best["concise"]] == [1.0, 1.0, 1.0]
    assert report.best["concise"][0].answer == "word0"
    assert report.best["concise"][0].baseline_answer == "I do not know."
    assert report.worst["concise"] == []  # it lost on no example


def test_the_difference_is_paired_on_shared_examples(eval_services):
    """Half the examples the pirate gets right (its system prompt is answered), half the
    baseline's answer is made right too: the paired difference is +1 on three examples and
    0 on three, mean 0.5, and its interval lies inside [0, 1]."""
    _done_run(eval_services)
    with eval_services.db() as db:
        db.execute(
            "UPDATE eval_answers SET scores_json = json_set(scores_json, '$.exact_match', 1.0) "
            "WHERE contestant = 'base' AND example_id IN "
            "(SELECT id FROM eval_examples WHERE position <= 3)"
        )
        report = build_report(db, "r")
    diff = report.row("exact_match", "pirate").vs_baseline
    assert diff.mean == pytest.approx(0.5) and 0.0 <= diff.low < 0.5 < diff.high <= 1.0
    assert report.row("exact_match", "pirate").verdict == "better"
    assert report.row("exact_match", "base").value.mean == pytest.approx(0.5)


def test_one_example_side_by_side_with_its_reference(eval_services):
    _done_run(eval_services)
    with eval_services.db() as db:
        detail = example_detail(db, "r", 2)
        with pytest.raises(NotFound, match="no example 99"):
            example_detail(db, "r", 99)
    assert detail["reference"] == "word1"
    assert detail["messages"] == [{"role": "user", "content": "Say: word1"}]
    answers = {a["contestant"]: a for a in detail["answers"]}
    assert answers["pirate"]["answer"] == "word1" and answers["base"]["answer"] == "I do not know."
    assert answers["pirate"]["scores"]["exact_match"] == 1.0


def test_results_export_every_answer_and_neutralise_formulas(eval_services, tmp_path):
    formula = "=cmd|' /C calc'!A0"
    _done_run(eval_services, prompts=say_prompts(3, first=formula))
    with eval_services.db() as db:
        assert write_results(db, "r", tmp_path / "r.csv", "csv") == 9
        assert write_results(db, "r", tmp_path / "r.jsonl", "jsonl") == 9
        with pytest.raises(ValidationError, match="format"):
            write_results(db, "r", tmp_path / "r.xlsx", "xlsx")
    rows = list(csv.DictReader((tmp_path / "r.csv").open(encoding="utf-8")))
    assert len(rows) == 9 and {r["contestant"] for r in rows} == {"base", "concise", "pirate"}
    first = next(r for r in rows if r["contestant"] == "pirate" and r["position"] == "1")
    assert first["answer"] == "'" + formula and first["reference"] == "'" + formula
    assert float(first["exact_match"]) == 1.0
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert records[0]["answer"] in (formula, "I do not know.")  # JSONL keeps text as it is
    assert not list(tmp_path.glob(".*partial*"))


def test_results_wait_until_the_run_is_done(eval_services, tmp_path):
    with eval_services.db() as db:
        create_run(db, eval_services.served_base, name="pending", prompts=say_prompts(1),
                   source="x", contestants=["base", "concise"], user="admin")  # fmt: skip
        with pytest.raises(ValidationError, match="is generating"):
            write_results(db, "pending", tmp_path / "x.csv", "csv")
    assert not (tmp_path / "x.csv").exists()


def test_the_cli_report_has_exactly_the_cores_numbers(eval_services, env):
    prompts = [Prompt([{"role": "user", "content": f"Say: {w}"}], w)
               for w in ["alpha", "beta", "gamma delta", "epsilon"]]  # fmt: skip
    _done_run(eval_services, prompts=prompts)
    with eval_services.db() as db:
        core = json.loads(json.dumps(build_report(db, "r").to_dict(), default=str))
    env = {**env, "FTAPP_BACKEND": "echo"}
    done = subprocess.run([sys.executable, "-m", "ftapp.cli", "eval", "report", "r", "--json"],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == core
    chrf = [r for r in core["rows"] if r["metric"] == "chrf" and r["contestant"] == "base"][0]
    assert chrf["value"]["low"] is not None and np.isfinite(chrf["value"]["low"])
    text = subprocess.run([sys.executable, "-m", "ftapp.cli", "eval", "report", "r"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "exact_match" in text.stdout and "better" in text.stdout
    missing = subprocess.run([sys.executable, "-m", "ftapp.cli", "eval", "report", "nope"],
                             env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert missing.returncode == 2 and "no evaluation run 'nope'" in missing.stderr
