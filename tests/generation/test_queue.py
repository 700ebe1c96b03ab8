"""The answer queue under both the Arena and Evaluate: one claim, one retry rule. A session's
answers and a run's answers that fail get the same attempts, and an admin's retry gives both
the same fresh attempts."""

from __future__ import annotations

from collections import Counter

from ftapp.arena.generation import SESSION_ANSWERS
from ftapp.arena.prompts import Prompt
from ftapp.arena.sessions import create_session, generation_progress, retry_failed
from ftapp.evaluation.runs import create_run, eval_work_list, retry_run, run_progress
from ftapp.generation.queue import MAX_ATTEMPTS, generate_pending
from ftapp.records import RunStatus
from ftapp.serving.backend import Sampling
from ftapp.store import evaluation as eval_store
from ftapp.store.answers import EVAL_ANSWERS_TABLE, SESSION_ANSWERS_TABLE, failure_reasons


def _prompts(n: int) -> list[Prompt]:
    return [Prompt([{"role": "user", "content": f"Say: word{i}"}], f"word{i}") for i in range(n)]


def _attempts(db, table) -> list[int]:
    return [row[0] for row in db.execute(f"SELECT attempts FROM {table.answers} ORDER BY id")]


def test_a_retried_answer_gets_the_same_attempts_in_sessions_and_runs(echo_services):
    services = echo_services
    with services.db() as db:
        session = create_session(
            db, services.served_base, name="s", prompts=_prompts(2), source="test",
            contestants=["base", "pirate"], sampling=Sampling(temperature=0, max_new_tokens=32),
            user="admin",
        )  # fmt: skip
        run = create_run(db, services.served_base, name="r", prompts=_prompts(2), source="test",
                         contestants=["base", "pirate"], user="admin")  # fmt: skip
    calls: Counter[str] = Counter()
    broken = {"on": True}

    def chat(model, messages, sampling):
        kind = "session" if sampling.max_new_tokens == 32 else "run"  # runs keep the default
        calls[kind] += 1
        if broken["on"]:
            raise RuntimeError("engine crashed")
        yield "word0"

    work = [SESSION_ANSWERS, eval_work_list(services.count_tokens.count_text, services.settings)]
    generate_pending(services.db, chat, work, workers=4)
    with services.db() as db:
        # Every answer of both kinds was tried MAX_ATTEMPTS times, then failed for good.
        assert _attempts(db, SESSION_ANSWERS_TABLE) == [MAX_ATTEMPTS] * 4
        assert _attempts(db, EVAL_ANSWERS_TABLE) == [MAX_ATTEMPTS] * 4
        assert generation_progress(db, session.id).failed == 4
        assert run_progress(db, run.id).failed == 4
        assert eval_store.get_run(db, run.id).status == RunStatus.FAILED
        for table, group in ((SESSION_ANSWERS_TABLE, session.id), (EVAL_ANSWERS_TABLE, run.id)):
            assert failure_reasons(db, table, group) == ["RuntimeError: engine crashed"]
        assert retry_failed(db, session.id) == 4
        assert retry_run(db, "r") == 4
        # The retry starts both kinds from a fresh count.
        assert _attempts(db, SESSION_ANSWERS_TABLE) == _attempts(db, EVAL_ANSWERS_TABLE) == [0] * 4
    assert calls == {"session": 4 * MAX_ATTEMPTS, "run": 4 * MAX_ATTEMPTS}
    calls.clear()
    generate_pending(services.db, chat, work, workers=4)  # still broken: the same tries again
    assert calls == {"session": 4 * MAX_ATTEMPTS, "run": 4 * MAX_ATTEMPTS}
    with services.db() as db:
        assert _attempts(db, SESSION_ANSWERS_TABLE) == _attempts(db, EVAL_ANSWERS_TABLE)
        assert retry_failed(db, session.id) == 4 and retry_run(db, "r") == 4
    broken["on"] = False
    generate_pending(services.db, chat, work, workers=4)
    with services.db() as db:
        assert generation_progress(db, session.id).done == 4
        assert run_progress(db, run.id).done == 4
        assert _attempts(db, SESSION_ANSWERS_TABLE) == _attempts(db, EVAL_ANSWERS_TABLE) == [1] * 4
