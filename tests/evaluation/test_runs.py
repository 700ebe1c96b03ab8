"""Evaluation runs on a real SQLite file: created whole or not at all, generated through the
batch generator, scored (metrics, checks, judge), failures retried and explained, cancelled,
and rescored after a crash."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from ftapp.errors import Conflict, ValidationError
from ftapp.evaluation.runs import cancel_run, create_run, retry_run
from ftapp.records import RunStatus
from ftapp.store import answers
from ftapp.store import evaluation as store
from ftapp.store.answers import EVAL_ANSWERS_TABLE
from ftapp.store.db import connect
from tests.evaluation.conftest import generate_all, knowing_chat, say_prompts
from tests.evaluation.judge_stub import JudgeStub, prefers_longer
from tests.helpers import table_counts


def _run(services, name="run1", contestants=("base", "concise"), n=4, **options):
    with services.db() as db:
        return create_run(db, services.served_base, name=name, prompts=say_prompts(n),
                          source="test prompts", contestants=list(contestants), user="admin",
                          **options)  # fmt: skip


def test_a_run_writes_one_pending_answer_per_example_and_contestant(eval_services):
    run = _run(eval_services, contestants=("base", "concise", "pirate"), n=5)
    with eval_services.db() as db:
        answers = store.run_answers(db, run.id)
        assert len(store.run_examples(db, run.id)) == 5
    assert len(answers) == 15 and {a["status"] for a in answers} == {"pending"}
    assert run.baseline.name == "base" and run.status == RunStatus.GENERATING
    assert run.sampling["temperature"] == 0.0  # greedy by default: reruns compare


def test_generated_answers_are_scored_against_their_references(eval_services):
    run = _run(eval_services)
    assert generate_all(eval_services) == 8
    with eval_services.db() as db:
        done = store.get_run(db, run.id)
        answers = {(a["contestant"], a["position"]): a for a in store.run_answers(db, run.id)}
    assert done.status == RunStatus.DONE and done.error is None and done.finished_at
    knows, doesnt = answers[("concise", 1)], answers[("base", 1)]
    assert knows["answer"] == "word0" and doesnt["answer"] == "I do not know."
    assert knows["scores"]["exact_match"] == 1.0 and doesnt["scores"]["exact_match"] == 0.0
    assert knows["scores"]["rouge_l"] == 1.0 and knows["scores"]["chrf"] == 100.0
    assert doesnt["scores"]["words"] == 4.0
    # Tokens come from the bundled model's tokenizer; tokens per second from the latency.
    assert knows["n_tokens"] >= 1 and doesnt["n_tokens"] > knows["n_tokens"]
    assert knows["latency_ms"] is not None and "tokens_per_second" in knows["scores"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"contestants": ("base", "nobody")}, "unknown contestant 'nobody'"),
        ({"contestants": ("base",)}, "at least two contestants"),
        ({"contestants": ("base", "base")}, "listed twice"),
        ({"name": "../etc"}, "run name"),
        ({"scoring": {"metrics": ["accuracy"]}}, "accuracy"),
        ({"scoring": {"metrics": ["regex"]}}, "regex"),
        ({"check_specs": [{"name": "x", "kind": "python", "path": "/no/such.py"}],
          "code_checks": True}, "check 'x': no such file"),
        ({"check_specs": [{"name": "bleu", "kind": "pep8"}]}, "a metric has that name"),
        ({"check_specs": [{"name": "p", "kind": "pep8"}, {"name": "p", "kind": "pep8"}]},
         "listed twice"),
        ({"judge_config": {"url": "ftp://judge", "model": "m"}}, "url"),
        ({"judge_config": {"url": "http://127.0.0.1:9", "model": ""}}, "model"),
    ],
)  # fmt: skip
def test_a_bad_run_is_refused_and_writes_nothing(eval_services, options, message):
    with eval_services.db() as db:
        before = table_counts(db)
    with pytest.raises(ValidationError, match=message):
        _run(eval_services, **options)
    with eval_services.db() as db:
        assert table_counts(db) == before


def test_a_second_run_with_the_same_name_is_a_conflict(eval_services):
    _run(eval_services)
    with pytest.raises(Conflict, match="exists already"):
        _run(eval_services)


def test_answers_that_keep_failing_are_retried_then_the_run_says_why(eval_services):
    run = _run(eval_services)

    def concise_breaks(model, messages, sampling):
        if messages[0]["role"] == "system":
            raise RuntimeError("engine crashed")
        yield from knowing_chat(model, messages, sampling)

    generate_all(eval_services, concise_breaks)
    with eval_services.db() as db:
        answers = store.run_answers(db, run.id)
        done = store.get_run(db, run.id)
    broken = [a for a in answers if a["contestant"] == "concise"]
    assert {a["status"] for a in broken} == {"failed"}
    assert {a["attempts"] for a in broken} == {3}  # MAX_ATTEMPTS
    assert "engine crashed" in broken[0]["error"]
    # The baseline's answers were scored; the run is done and the report counts the failures.
    assert done.status == RunStatus.DONE
    # Retrying generates the failed answers again, and the run is scored again.
    with eval_services.db() as db:
        assert retry_run(db, "run1") == 4
    generate_all(eval_services)
    with eval_services.db() as db:
        answers = store.run_answers(db, run.id)
        assert store.get_run(db, run.id).status == RunStatus.DONE
    assert {a["status"] for a in answers} == {"done"}
    assert all(a["scores"] is not None for a in answers)


def test_a_run_whose_every_answer_failed_is_failed_with_the_reason(eval_services):
    run = _run(eval_services, n=1)

    def down(model, messages, sampling):
        raise RuntimeError("vLLM is not answering")

    generate_all(eval_services, down)
    with eval_services.db() as db:
        failed = store.get_run(db, run.id)
    assert failed.status == RunStatus.FAILED
    assert "no answer was generated" in failed.error and "not answering" in failed.error


def test_a_cancelled_run_is_not_generated(eval_services):
    run = _run(eval_services)
    with eval_services.db() as db:
        cancel_run(db, "run1")
        with pytest.raises(Conflict, match="only a running evaluation"):
            cancel_run(db, "run1")
    assert generate_all(eval_services) == 0
    with eval_services.db() as db:
        assert answers.answer_counts(db, EVAL_ANSWERS_TABLE, run.id) == {"pending": 8}
        assert store.get_run(db, run.id).status == RunStatus.CANCELLED


def test_a_run_left_scoring_by_a_crash_is_scored_again(eval_services):
    run = _run(eval_services)
    generate_all(eval_services)
    with eval_services.db() as db:
        db.execute("UPDATE eval_answers SET scores_json = NULL WHERE run_id = ?", [run.id])
        store.set_run_status(db, run.id, RunStatus.SCORING)  # the app died while scoring
    generate_all(eval_services)
    with eval_services.db() as db:
        assert store.get_run(db, run.id).status == RunStatus.DONE
        assert all(a["scores"] for a in store.run_answers(db, run.id))


def test_two_generators_never_claim_the_same_answer(eval_services):
    _run(eval_services, n=20)
    claimed: list[list[int]] = [[], []]

    def claim(slot: int) -> None:
        db = connect(eval_services.settings.db_path)
        try:
            for _ in range(10):
                rows = answers.claim_answers(db, EVAL_ANSWERS_TABLE, 3, "0")
                claimed[slot] += [r["id"] for r in rows]
        finally:
            db.close()

    threads = [threading.Thread(target=claim, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(claimed[0]) & set(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 40


def test_checks_score_every_answer_and_keep_what_they_said(eval_services, tmp_path):
    check_file = tmp_path / "has_word.py"
    check_file.write_text(
        "def check(answer, reference, prompt):\n    return answer.startswith('word')\n"
    )
    specs = [
        {"name": "pep8", "kind": "pep8"},
        {"name": "has_word", "kind": "python", "path": str(check_file)},
        {"name": "short", "kind": "command", "input": "stdin",
         "command": "python3 -c \"import sys; print(1.0 if len(sys.stdin.read()) < 8 else 0.0)\""},
    ]  # fmt: skip
    run = _run(eval_services, check_specs=specs, code_checks=True)
    allowed = dataclasses.replace(eval_services.settings, code_checks=True)
    generate_all(eval_services, settings=allowed)
    with eval_services.db() as db:
        answers = {(a["contestant"], a["position"]): a for a in store.run_answers(db, run.id)}
    knows, doesnt = answers[("concise", 1)], answers[("base", 1)]
    assert (knows["scores"]["has_word"], doesnt["scores"]["has_word"]) == (1.0, 0.0)
    assert (knows["scores"]["short"], doesnt["scores"]["short"]) == (1.0, 0.0)
    # "word0" is valid Python (a name) but undefined: flake8's F821 on its only line.
    assert knows["scores"]["pep8"] == 0.0 and "F821" in knows["details"]["pep8"]
    assert doesnt["scores"]["pep8"] == 0.0 and "E999" in doesnt["details"]["pep8"]


def test_the_judge_compares_each_contestant_with_the_baseline_in_both_orders(eval_services):
    with JudgeStub(reply=prefers_longer) as judge:
        run = _run(eval_services, judge_config={"url": judge.url, "model": "judge"})
        generate_all(eval_services)
        bodies = judge.chat_bodies
    with eval_services.db() as db:
        verdicts = store.judgments(db, run.id)
        answers = [a for a in store.run_answers(db, run.id) if a["contestant"] == "concise"]
        assert store.get_run(db, run.id).error is None
    assert len(bodies) == 8  # 4 examples, each pair judged twice
    assert sorted(v["contestant_position"] for v in verdicts) == ["a"] * 4 + ["b"] * 4
    # "I do not know." is longer than "wordN": the judge prefers the baseline in both orders.
    assert {v["winner"] for v in verdicts} == {"opponent"}
    assert {a["scores"]["judge"] for a in answers} == {0.0}
    assert all(v["raw"] for v in verdicts)  # what the judge said is kept


def test_an_unreachable_judge_leaves_the_metrics_and_says_so(eval_services):
    with JudgeStub() as judge:
        url = judge.url  # closed when the block ends: nothing listens there any more
    run = _run(eval_services, judge_config={"url": url, "model": "judge"})
    generate_all(eval_services)
    with eval_services.db() as db:
        done = store.get_run(db, run.id)
        answers = store.run_answers(db, run.id)
    assert done.status == RunStatus.DONE
    assert done.error.startswith("the judge was not used")
    assert url.removeprefix("http://") in done.error  # host:port
    assert all("exact_match" in a["scores"] and "judge" not in a["scores"] for a in answers)


def test_the_judge_gets_the_key_only_from_settings_that_list_its_host(eval_services, monkeypatch):
    monkeypatch.setenv("FTAPP_JUDGE_API_KEY", "sk-env")
    listing = dataclasses.replace(eval_services.settings, judge_api_hosts=("127.0.0.1",))
    with JudgeStub() as judge:
        config = {"url": judge.url, "model": "judge"}
        _run(eval_services, name="unlisted", n=1, judge_config=config)
        generate_all(eval_services)
        unlisted = [r.headers.get("authorization") for r in judge.requests]
        _run(eval_services, name="listed", n=1, judge_config=config)
        generate_all(eval_services, settings=listing)
        listed = [r.headers.get("authorization") for r in judge.requests[len(unlisted) :]]
    assert unlisted == [None] * 3  # the models, then the pair in both orders
    assert listed == ["Bearer sk-env"] * 3
