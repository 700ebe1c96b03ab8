"""Preference accuracy on a real SQLite file: a run on a preference version's test split keeps
its pairs, scores every contestant (the base model included, a prompt variant with its system
prompt) on each pair through the backend's answer log-probabilities, and the report and
`ftapp eval report` show it with its interval, against chance and against the baseline. Refused
where there are no pairs. The echo backend for the plumbing (its likelihood: an answer's words
it would not have said cost one each); the real in-process backend on the bundled model finds
the right answers likelier."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from ftapp.data.from_rows import dataset_from_rows
from ftapp.errors import ServingError, ValidationError
from ftapp.evaluation.preference_accuracy import (
    MARGIN,
    METRIC,
    offers_preference_accuracy,
    version_pairs,
)
from ftapp.evaluation.report import build_report, result_records
from ftapp.evaluation.runs import start_run
from ftapp.records import RunStatus
from ftapp.services import Services
from ftapp.serving.backend import Sampling
from ftapp.store import evaluation as store
from tests.arena.conftest import arena_home
from tests.evaluation.conftest import generate_all
from tests.helpers import make_version, table_counts, write_jsonl

SAMPLING = Sampling(temperature=0.0, max_new_tokens=8)

# Echo's log-probability of an answer: minus its words found neither in the reply echo gives
# ("[model] <question>") nor in a system message. So on the first pair every contestant
# prefers the chosen answer; on the second only "concise", whose system prompt it is (the
# plain base model ties, -4 against -4, which is not a preference; "pirate" prefers the other).
ECHO_ROWS = [
    {"prompt": "What is 2+2?", "chosen": "What is 2+2?", "rejected": "purple elephant banana"},
    {"prompt": "How should you answer?", "chosen": "Answer in one line.",
     "rejected": "Talk like a pirate."},
    {"prompt": "Say hi", "completion": "hi", "label": True},  # not a pair: not scored
]  # fmt: skip


def preference_version(services, folder, rows=ECHO_ROWS, name="prefs") -> str:
    """Pairs and labelled answers in one version, every row in its test split (as the Arena's
    votes give them: one file of pairs, one of KTO rows)."""
    files = {"pairs.jsonl": [r for r in rows if "label" not in r],
             "labelled.jsonl": [r for r in rows if "label" in r]}  # fmt: skip
    with services.db() as db:
        version = dataset_from_rows(db, name, files, description="test pairs", user="admin",
                                    count_tokens=services.count_tokens, max_tokens=512,
                                    ratios=(0.01, 0.0, 0.99))  # fmt: skip
    return version.label


def generate_with_logprobs(services, likelihood=None, workers: int = 2) -> int:
    return generate_all(services, services.stream_chat, workers,
                        answer_likelihood=likelihood or services.answer_likelihood)  # fmt: skip


def start(services, label, name="prefs run", **options):
    options = {"contestants": ["base", "concise", "pirate"], "sampling": SAMPLING,
               "version": label, **options}  # fmt: skip
    with services.db() as db:
        return start_run(db, services.served_base, services.settings, name=name,
                         user="admin", **options)  # fmt: skip


def test_every_contestant_gets_its_preference_accuracy(eval_services, tmp_path):
    label = preference_version(eval_services, tmp_path)
    run = start(eval_services, label)  # no metrics named: the defaults and preference accuracy
    assert METRIC in run.checks["metrics"] and "rouge_l" in run.checks["metrics"]
    with eval_services.db() as db:
        examples = store.run_examples(db, run.id)
    by_prompt = {e["messages"][-1]["content"]: e["pair"] for e in examples}
    assert by_prompt["What is 2+2?"] == {
        "chosen": [{"role": "assistant", "content": "What is 2+2?"}],
        "rejected": [{"role": "assistant", "content": "purple elephant banana"}],
    }
    assert by_prompt["Say hi"] is None

    assert generate_with_logprobs(eval_services) == 9
    with eval_services.db() as db:
        done = store.get_run(db, run.id)
        answers = store.run_answers(db, run.id)
        report = build_report(db, run.id)
        records = result_records(db, run.id)
    assert done.status == RunStatus.DONE and done.error is None
    position = {e["id"]: e["messages"][-1]["content"] for e in examples}
    scores = {(a["contestant"], position[a["example_id"]]): a["scores"] for a in answers}
    assert scores[("base", "What is 2+2?")][METRIC] == 1.0
    assert scores[("base", "What is 2+2?")][MARGIN] == 3.0  # 0 against -3
    assert scores[("base", "How should you answer?")][METRIC] == 0.0  # a tie is no preference
    assert scores[("concise", "How should you answer?")][METRIC] == 1.0  # its system prompt
    assert scores[("pirate", "How should you answer?")][MARGIN] == -4.0
    assert METRIC not in scores[("base", "Say hi")]  # an answer labelled good is not a pair
    detail = next(a["details"][METRIC] for a in answers
                  if a["contestant"] == "concise" and position[a["example_id"]] != "Say hi"
                  and a["details"].get(METRIC))  # fmt: skip
    assert "chosen" in detail and "rejected" in detail

    assert report.metrics[report.metrics.index(METRIC) + 1] == MARGIN
    base, concise = report.row(METRIC, "base"), report.row(METRIC, "concise")
    assert base.label == "Preference accuracy" and base.vs_baseline is None
    assert (base.value.mean, base.value.n) == (0.5, 2)
    assert base.chance == "no clear difference from chance"
    assert (concise.value.mean, concise.value.low, concise.value.high) == (1.0, 1.0, 1.0)
    assert concise.chance == "above chance" and concise.vs_baseline.mean == 0.5
    assert report.row(METRIC, "pirate").value.mean == 0.5
    assert report.row(MARGIN, "concise").value.mean == 3.5  # (3 + 4) / 2
    exported = {(r["contestant"], r["prompt"]): r for r in records}
    assert exported[("concise", "How should you answer?")][METRIC] == 1.0


def test_the_cli_runs_and_reports_preference_accuracy(eval_services, tmp_path, env):
    label = preference_version(eval_services, tmp_path)
    env = {**env, "FTAPP_BACKEND": "echo"}
    cli = subprocess.run(
        [sys.executable, "-m", "ftapp.cli", "eval", "run", "from the terminal", "--contestants",
         "base,concise", "--version", label, "--max-new-tokens", "8", "--json"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    rows = {(r["metric"], r["contestant"]): r for r in json.loads(cli.stdout)["rows"]}
    assert rows[(METRIC, "base")]["value"]["mean"] == 0.5
    assert rows[(METRIC, "concise")]["value"]["mean"] == 1.0
    assert rows[(METRIC, "concise")]["chance"] == "above chance"
    text = subprocess.run([sys.executable, "-m", "ftapp.cli", "eval", "report",
                           "from the terminal"], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if METRIC in x and "concise" in x)
    assert "1.000" in line and "above chance" in line


def test_named_metrics_without_it_leave_it_out(eval_services, tmp_path):
    label = preference_version(eval_services, tmp_path)
    run = start(eval_services, label, metric_names=["exact_match"])
    generate_with_logprobs(eval_services)
    with eval_services.db() as db:
        answers = store.run_answers(db, run.id)
        report = build_report(db, run.id)
    assert all(METRIC not in a["scores"] for a in answers)
    assert METRIC not in report.metrics and MARGIN not in report.metrics


def test_it_is_refused_without_pairs_and_nothing_is_written(eval_services, tmp_path):
    only_labels = [{"prompt": "Say hi", "completion": "hi", "label": True},
                   {"prompt": "Say bye", "completion": "no", "label": False}]  # fmt: skip
    labelled = preference_version(eval_services, tmp_path, only_labels, name="labels")
    prompt_file = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "Say: hi"}])
    with eval_services.db() as db:
        sft = make_version(db, tmp_path, eval_services.count_tokens, name="sft",
                           ratios=(0.5, 0.0, 0.5))  # fmt: skip
        before = table_counts(db)
    for source in ({"version": sft}, {"version": labelled}, {"prompt_file": prompt_file}):
        with pytest.raises(ValidationError, match=f"metric {METRIC}: .* no preference pairs"):
            start(eval_services, None, **source, metric_names=["rouge_l", METRIC])
    with eval_services.db() as db:
        assert table_counts(db) == before
        assert not offers_preference_accuracy(db, sft, "test")
        assert not offers_preference_accuracy(db, labelled, "test")
        assert not offers_preference_accuracy(db, "nope@v1", "test")
        assert not offers_preference_accuracy(db, None, "test")
        assert version_pairs(db, sft, "test") is None
        # Conversations, not preferences: the defaults alone, nothing to refuse.
        run = start(eval_services, sft, contestants=["base", "concise"])
    assert METRIC not in run.checks["metrics"]


def test_a_backend_that_cannot_score_leaves_a_note_and_the_rest_scored(eval_services, tmp_path):
    label = preference_version(eval_services, tmp_path)
    with eval_services.db() as db:
        assert offers_preference_accuracy(db, label, "test")
        assert not offers_preference_accuracy(db, label, "train")  # nothing there
    run = start(eval_services, label)

    def pirate_breaks(model, messages, answer):
        if messages[0]["content"] == "Talk like a pirate.":
            raise ServingError("vLLM refused scoring the answer (400): too long")
        return eval_services.answer_likelihood(model, messages, answer)

    generate_with_logprobs(eval_services, pirate_breaks)
    with eval_services.db() as db:
        done = store.get_run(db, run.id)
        report = build_report(db, run.id)
    assert done.status == RunStatus.DONE
    assert done.error == ("preference accuracy failed on 2 of 6 answers: vLLM refused scoring "
                          "the answer (400): too long")  # fmt: skip
    assert report.row(METRIC, "pirate").value.n == 0  # left out, not counted as wrong
    assert report.row(METRIC, "concise").value.mean == 1.0


def test_a_scorer_without_a_backend_says_so(eval_services, tmp_path):
    run = start(eval_services, preference_version(eval_services, tmp_path))
    generate_all(eval_services, chat=eval_services.stream_chat)  # no answer_likelihood given
    with eval_services.db() as db:
        done = store.get_run(db, run.id)
    assert done.status == RunStatus.DONE
    assert "preference accuracy was not scored" in done.error


# Hand-written pairs whose chosen answer any language model should find likelier.
CLEAR_PAIRS = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "purple elephant banana"},
    {"prompt": "What is the capital of France?", "chosen": "The capital of France is Paris.",
     "rejected": "Carrot spoon the of whenever nine."},
    {"prompt": "Say hello.", "chosen": "Hello!", "rejected": "Zxq vrrp klorb."},
    {"prompt": "What color is the sky on a clear day?", "chosen": "The sky is blue.",
     "rejected": "Sky the elephant seventeen purple is."},
]  # fmt: skip


@pytest.mark.slow  # the bundled model generates and scores in-process: tens of seconds
def test_the_bundled_model_prefers_the_right_answers(home, tmp_path):
    services = Services(replace(arena_home(home).settings, backend="hf"))
    assert services.backend.name == "hf"
    label = preference_version(services, tmp_path, CLEAR_PAIRS, name="clear")
    run = start(services, label, contestants=["base", "concise"],
                metric_names=[METRIC])  # fmt: skip
    generate_with_logprobs(services, workers=1)
    with services.db() as db:
        done = store.get_run(db, run.id)
        report = build_report(db, run.id)
        answers = store.run_answers(db, run.id)
    assert done.status == RunStatus.DONE, done.error
    for contestant in ("base", "concise"):
        row = report.row(METRIC, contestant)
        assert row.value.n == len(CLEAR_PAIRS) and row.value.mean > 0.5
        assert report.row(MARGIN, contestant).value.mean > 0
    # The prompt variant's system prompt changes what the model is given, so its numbers.
    margins = {(a["contestant"], a["example_id"]): a["scores"][MARGIN] for a in answers}
    assert any(margins[("base", e)] != margins[("concise", e)] for _, e in margins)
