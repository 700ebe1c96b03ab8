"""Evaluation sessions through the core: prompts from a version or a file, answers generated
once in the background, battles made when they are in, and reviewer queues that spread the
overlap, pick up where a reviewer left off and never repeat a battle."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import combinations

import pytest

from ftapp.arena.battles import record_vote
from ftapp.arena.generation import SESSION_ANSWERS, generate_pending
from ftapp.arena.prompts import Prompt, prompts_from_file, prompts_from_version
from ftapp.arena.sessions import (
    close_session,
    create_session,
    generation_progress,
    next_battle,
    open_if_generated,
    retry_failed,
    reviewer_progress,
    session_for,
    sessions_for,
)
from ftapp.auth import User
from ftapp.errors import Conflict, Forbidden, NotFound, ValidationError
from ftapp.generation.queue import AnswerGenerator
from ftapp.records import Role, SessionStatus
from ftapp.serving.backend import Sampling
from ftapp.store import answers
from ftapp.store import arena as store
from ftapp.store.answers import SESSION_ANSWERS_TABLE
from tests.arena.conftest import CONTESTANTS, reviewer
from tests.helpers import make_version, write_jsonl


def _prompts(n: int) -> list[Prompt]:
    return [Prompt([{"role": "user", "content": f"question {i}"}], f"answer {i}") for i in range(n)]


def _session(services, n_prompts=4, contestants=CONTESTANTS, overlap=2, **kwargs):
    with services.db() as db:
        return create_session(
            db, services.served_base, name=kwargs.pop("name", "review"),
            prompts=_prompts(n_prompts), source="test", contestants=contestants,
            sampling=Sampling(temperature=0, max_new_tokens=32), overlap=overlap,
            user="admin", **kwargs,
        )  # fmt: skip


def _generate(services) -> int:
    return generate_pending(services.db, services.stream_chat, workers=3)


def test_answers_are_generated_once_then_battles_cover_every_pair(echo_services):
    session = _session(echo_services, n_prompts=4)
    with echo_services.db() as db:
        assert generation_progress(db, session.id).total == 4 * 3
        assert store.get_session(db, session.id).status == SessionStatus.GENERATING
        with pytest.raises(ValidationError, match="still generating"):
            next_battle(db, session.id, reviewer("rita"))
    assert _generate(echo_services) == 12
    assert _generate(echo_services) == 0  # nothing is generated twice
    with echo_services.db() as db:
        assert store.get_session(db, session.id).status == SessionStatus.OPEN
        battles = list(db.query("SELECT * FROM battles WHERE session_id = ?", [session.id]))
        answers = store.session_answers(db, session.id)
    assert all(a["status"] == "done" and a["latency_ms"] is not None for a in answers)
    # one battle per prompt and pair, each answer the pre-generated one
    pairs = Counter((b["prompt_id"], frozenset((b["model_a"], b["model_b"]))) for b in battles)
    assert len(pairs) == 4 * 3 and set(pairs.values()) == {1}
    assert {frozenset(p) for _, p in pairs} == {frozenset(p) for p in combinations(CONTESTANTS, 2)}
    texts = {(a["prompt_id"], a["contestant"]): a["answer"] for a in answers}
    for b in battles:
        assert (
            json.loads(b["conversation_a_json"])[-1]["content"]
            == texts[(b["prompt_id"], b["model_a"])]
        )


def test_sides_of_session_battles_are_random(echo_services):
    with echo_services.db() as db:
        session = create_session(
            db, echo_services.served_base, name="sides", prompts=_prompts(60), source="t",
            contestants=["base", "pirate"], sampling=Sampling(), user="admin",
        )  # fmt: skip
    _generate(echo_services)
    with echo_services.db() as db:
        left = Counter(r["model_a"] for r in db.query("SELECT model_a FROM battles"))
    assert left["base"] + left["pirate"] == 60
    assert 15 <= left["base"] <= 45, left  # binomial(60, 0.5): far outside this is a bug
    assert session.status == SessionStatus.GENERATING


def test_reviewer_queues_reach_the_overlap_and_never_repeat(echo_services):
    session = _session(echo_services, n_prompts=3, overlap=2)  # 9 battles
    _generate(echo_services)
    judged: dict[str, list[int]] = {}
    with echo_services.db() as db:
        for name in ["rita", "sam", "tom"] * 10:
            battle_id = next_battle(db, session.id, reviewer(name))
            if battle_id is None:
                continue
            judged.setdefault(name, []).append(battle_id)
            record_vote(db, battle_id, name, random.choice(["a", "b", "tie", "both_bad"]))
        votes = Counter(row["battle_id"] for row in db.query("SELECT battle_id FROM votes"))
        progress = reviewer_progress(db, session.id, "rita")
        assert next_battle(db, session.id, reviewer("rita")) is None  # done
    assert len(votes) == 9 and set(votes.values()) == {2}  # every battle exactly at overlap
    for battles in judged.values():
        assert len(battles) == len(set(battles))  # nobody judged a battle twice
    assert progress.session_votes == progress.session_target == 18
    assert progress.remaining == 0 and progress.fraction == 1.0


def test_a_reload_picks_up_the_same_battle(echo_services):
    session = _session(echo_services)
    _generate(echo_services)
    with echo_services.db() as db:
        first = next_battle(db, session.id, reviewer("rita"))
        assert next_battle(db, session.id, reviewer("rita")) == first
        before = reviewer_progress(db, session.id, "rita")
        record_vote(db, first, "rita", "a")
        second = next_battle(db, session.id, reviewer("rita"))
        after = reviewer_progress(db, session.id, "rita")
    assert second != first
    assert (before.judged, after.judged) == (0, 1)
    assert after.remaining == before.remaining - 1


def test_battles_in_other_hands_count_towards_the_overlap_until_the_hold_expires(echo_services):
    session = _session(echo_services, n_prompts=1, contestants=["base", "pirate"], overlap=1)
    _generate(echo_services)
    with echo_services.db() as db:
        only = next_battle(db, session.id, reviewer("rita"))
        assert next_battle(db, session.id, reviewer("sam")) is None  # rita holds it
        later = datetime.now(UTC) + timedelta(hours=1)
        assert next_battle(db, session.id, reviewer("sam"), now=later) == only


def test_concurrent_reviewers_get_distinct_battles(echo_services):
    session = _session(echo_services, n_prompts=10, overlap=1)  # 30 battles
    _generate(echo_services)
    given: list[int | None] = []
    lock = threading.Lock()

    def take(name: str) -> None:
        with echo_services.db() as db:
            battle_id = next_battle(db, session.id, reviewer(name))
        with lock:
            given.append(battle_id)

    threads = [threading.Thread(target=take, args=(f"r{i}",)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert None not in given and len(set(given)) == 30


def test_reviewers_asking_from_many_tabs_at_once_are_given_one_battle_each(echo_services):
    session = _session(echo_services, n_prompts=10, overlap=1)  # 30 battles
    _generate(echo_services)
    names = [f"r{i}" for i in range(6)]
    given: dict[str, set[int | None]] = {name: set() for name in names}
    lock = threading.Lock()
    start = threading.Barrier(len(names) * 4)

    def take(name: str) -> None:
        with echo_services.db() as db:
            start.wait()
            battle_id = next_battle(db, session.id, reviewer(name))
        with lock:
            given[name].add(battle_id)

    threads = [threading.Thread(target=take, args=(name,)) for name in names * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with echo_services.db() as db:
        rows = db.execute("SELECT reviewer, COUNT(*) FROM battle_assignments GROUP BY 1")
        assigned = dict(rows.fetchall())
    # Every tab of a reviewer shows the same battle, and nobody holds more than that one.
    assert all(len(ids) == 1 and None not in ids for ids in given.values()), given
    assert assigned == dict.fromkeys(names, 1)
    assert len({next(iter(ids)) for ids in given.values()}) == len(names)


def test_who_may_take_part(echo_services):
    session = _session(echo_services, reviewers=["rita", " sam "])
    _generate(echo_services)
    with echo_services.db() as db:
        assert store.get_session(db, session.id).reviewers == ["rita", "sam"]
        assert [s.name for s in sessions_for(db, reviewer("sam"))] == ["review"]
        assert sessions_for(db, reviewer("mallory")) == []
        with pytest.raises(Forbidden):
            next_battle(db, session.id, reviewer("mallory"))
        battle_id = next_battle(db, session.id, reviewer("rita"))
        with pytest.raises(Forbidden):
            record_vote(db, battle_id, "mallory", "a")  # not given to mallory


def test_a_session_not_yours_reads_exactly_like_one_that_does_not_exist(echo_services):
    """Asked by name (progress, next battle), a session a reviewer may not judge gets the same
    answer as a name no session has: nobody learns which sessions exist, or how far along."""

    def refusal(name, who: str) -> tuple[type, str]:
        with echo_services.db() as db, pytest.raises(NotFound) as raised:
            session_for(db, name, reviewer(who))
        return type(raised.value), str(raised.value)

    before = {name: refusal(name, "mallory") for name in ("private", "closed", "generating")}
    assert before["private"] == (NotFound, "no evaluation session named 'private' for you")
    _session(echo_services, name="private", reviewers=["rita"])
    closed = _session(echo_services, name="closed")
    _generate(echo_services)
    _session(echo_services, name="generating")  # open to everyone, its answers not in yet
    with echo_services.db() as db:
        close_session(db, closed.id)
        assert session_for(db, "private", reviewer("rita")).name == "private"
        assert session_for(db, "private", User("ada", Role.ADMIN)).name == "private"
        assert sessions_for(db, reviewer("mallory")) == []
    # Not in it, closed, not opened yet: word for word what a missing name got.
    assert refusal("private", "mallory") == before["private"]
    assert refusal("closed", "rita") == before["closed"]
    assert refusal("generating", "rita") == before["generating"]
    assert refusal({"name": "private"}, "rita")[1].startswith("no evaluation session named {")


def test_failed_answers_wait_for_the_admin(echo_services):
    session = _session(echo_services, n_prompts=2, contestants=["base", "pirate"])
    broken = {"on": True}

    def chat(model, messages, sampling):
        if broken["on"] and messages[0]["role"] == "system":
            raise RuntimeError("engine crashed")
        yield "answer"

    generate_pending(echo_services.db, chat, workers=2)
    with echo_services.db() as db:
        progress = generation_progress(db, session.id)
        assert (progress.done, progress.failed) == (2, 2)  # after three attempts each
        errors = {a["error"] for a in store.session_answers(db, session.id) if a["error"]}
        assert errors == {"RuntimeError: engine crashed"}
        assert store.get_session(db, session.id).status == SessionStatus.GENERATING
        assert retry_failed(db, session.id) == 2
    broken["on"] = False
    generate_pending(echo_services.db, chat, workers=2)
    with echo_services.db() as db:
        assert store.get_session(db, session.id).status == SessionStatus.OPEN


def test_open_anyway_leaves_out_the_battles_of_failed_answers(echo_services):
    session = _session(echo_services, n_prompts=2, contestants=["base", "pirate"])

    def chat(model, messages, sampling):
        if "question 1" in messages[-1]["content"]:
            raise RuntimeError("too long")
        yield "answer"

    generate_pending(echo_services.db, chat, workers=1)
    with echo_services.db() as db:
        assert open_if_generated(db, session.id) is False
        assert open_if_generated(db, session.id, even_with_failures=True) is True
        assert db["battles"].count == 1


def test_the_background_generator_opens_sessions_by_itself(echo_services):
    session = _session(echo_services, n_prompts=2)
    generator = AnswerGenerator(
        echo_services.db, echo_services.stream_chat, [SESSION_ANSWERS], 2, lambda: True
    )
    generator.start()
    try:
        generator.wake()
        for _ in range(100):
            with echo_services.db() as db:
                if store.get_session(db, session.id).status == SessionStatus.OPEN:
                    break
            threading.Event().wait(0.05)
    finally:
        generator.stop()
    with echo_services.db() as db:
        assert store.get_session(db, session.id).status == SessionStatus.OPEN


def test_a_generator_that_died_leaves_its_answers_to_the_next(echo_services):
    session = _session(echo_services, n_prompts=1, contestants=["base", "pirate"])
    with echo_services.db() as db:
        stale = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        claimed = answers.claim_answers(db, SESSION_ANSWERS_TABLE, 10, stale)
        assert len(claimed) == 2
        assert answers.claim_answers(db, SESSION_ANSWERS_TABLE, 10, stale) == []  # taken
        db.execute("UPDATE session_answers SET claimed_at = '2000-01-01T00:00:00'")
    assert _generate(echo_services) == 2  # claimed long ago: its generator is gone
    with echo_services.db() as db:
        assert store.get_session(db, session.id).status == SessionStatus.OPEN


def test_bad_sessions_are_refused_and_write_nothing(echo_services):
    cases = [
        ({"name": "../x"}, "session name"),
        ({"contestants": ["base"]}, "at least two contestants"),
        ({"contestants": ["base", "nope"]}, "unknown contestant"),
        ({"contestants": ["base", "base"]}, "listed twice"),
        ({"overlap": 0}, "overlap"),
        ({"n_prompts": 0}, "at least one prompt"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValidationError, match=message):
            _session(echo_services, **kwargs)
    _session(echo_services)
    with pytest.raises(Conflict, match="already exists"):
        _session(echo_services)
    with echo_services.db() as db:
        assert db["eval_sessions"].count == 1
        assert db["session_prompts"].count == 4


def test_prompts_from_a_version_test_split(echo_services, tmp_path, count_tokens):
    with echo_services.db() as db:
        label = make_version(db, tmp_path, count_tokens, n=20, ratios=(0.5, 0.0, 0.5))
        prompts, source = prompts_from_version(db, label)
    assert source == f"{label} (test split)"
    assert len(prompts) == 10
    first = prompts[0]
    assert first.messages[-1]["role"] == "user" and "plus" in first.messages[-1]["content"]
    assert first.reference and "is" in first.reference
    with echo_services.db() as db, pytest.raises(ValidationError, match="validation split"):
        prompts_from_version(db, label, split="validation")


def test_prompts_from_a_file(tmp_path):
    path = write_jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"prompt": "plain question", "reference": "plain answer"},
            {"messages": [{"role": "user", "content": "hi"},
                          {"role": "assistant", "content": "hello"},
                          {"role": "user", "content": "and then?"},
                          {"role": "assistant", "content": "then this"}]},
            {"instruction": "Add", "input": "2 and 2", "output": "4"},
        ],
    )  # fmt: skip
    prompts, source = prompts_from_file(path)
    assert source == "uploaded prompts.jsonl"
    assert prompts[0] == Prompt([{"role": "user", "content": "plain question"}], "plain answer")
    assert [m["role"] for m in prompts[1].messages] == ["user", "assistant", "user"]
    assert prompts[1].reference == "then this"
    assert prompts[2].messages[-1]["content"] == "Add\n\n2 and 2"
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok"}, {"question": "?"}])
    with pytest.raises(ValidationError, match="bad.jsonl line 2"):
        prompts_from_file(bad)
    broken = write_jsonl(tmp_path / "broken.jsonl", [{"prompt": "ok"}, '{"prompt": '])
    with pytest.raises(ValidationError, match="broken.jsonl line 2"):
        prompts_from_file(broken)


def test_many_reviewers_voting_at_once_lose_nothing_and_count_nothing_twice(echo_services):
    session = _session(echo_services, n_prompts=10, overlap=1)  # 30 battles
    _generate(echo_services)
    names = [f"r{i}" for i in range(30)]
    with echo_services.db() as db:
        given = {name: next_battle(db, session.id, reviewer(name)) for name in names}
    acknowledged: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()

    def vote(name: str, choice: str) -> None:
        try:
            with echo_services.db() as db:
                record_vote(db, given[name], name, choice)
            outcome = acknowledged
        except Conflict:
            outcome = refused
        with lock:
            outcome.append(name)

    # Every reviewer votes twice at the same moment (a double click): one vote each counts.
    threads = [threading.Thread(target=vote, args=(name, choice))
               for name in names for choice in ("a", "b")]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with echo_services.db() as db:
        rows = list(db.query("SELECT battle_id, reviewer FROM votes"))
    assert sorted(acknowledged) == sorted(names) and sorted(refused) == sorted(names)
    assert len(rows) == 30 and {r["reviewer"] for r in rows} == set(names)
