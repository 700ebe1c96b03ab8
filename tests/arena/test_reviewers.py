"""Reviewers checked: check battles reach every reviewer unannounced, each reviewer's accuracy
on them, agreement and position bias are measured, a careless reviewer is flagged, and a
session's minimum accuracy drops their votes from a second set of ratings that lies nearer
the truth. Simulated votes in a real database, through the functions the app calls."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from ftapp.arena.export import battle_records
from ftapp.arena.generation import generate_pending
from ftapp.arena.gold import CHECK_BETTER, add_check, mark_check, set_min_accuracy
from ftapp.arena.leaderboard import leaderboard
from ftapp.arena.preferences import preferences_from_votes
from ftapp.arena.prompts import Prompt
from ftapp.arena.reviewers import VoteRecord, reviewer_quality
from ftapp.arena.sessions import create_session, reviewer_progress
from ftapp.errors import ValidationError
from ftapp.serving.backend import Sampling
from ftapp.store import arena as store
from tests.arena.conftest import vote_in_turns
from tests.live_app import REPO

CAREFUL = ("ann", "ben", "cat")
CARELESS = "carl"
N_PROMPTS = 200  # enough that the careless reviewer's left clicks land near 50% pirate
N_MARKED = 8


def _pirate_is_better(prompt: str) -> bool:
    """The truth of the simulation: pirate's answer is better on 9 prompts of 10."""
    return int(prompt.rsplit(" ", 1)[1]) % 10 != 0


def _chat(model, messages, sampling):
    pirate = messages[0]["role"] == "system"
    yield ("Arr! " if pirate else "") + "an answer of a few words to " + messages[-1]["content"]


def _careful_vote(battle) -> str:
    if battle.gold_choice:
        return battle.gold_choice
    pirate_side = "a" if battle.model_a == "pirate" else "b"
    base_side = "b" if pirate_side == "a" else "a"
    return pirate_side if _pirate_is_better(battle.prompt[-1]["content"]) else base_side


@pytest.fixture
def judged(echo_services):
    """A session of base vs pirate, one reviewer per battle, with 8 battles marked as checks
    and 2 checks from known answers; three careful reviewers and one who always clicks A."""
    prompts = [Prompt([{"role": "user", "content": f"question {i}"}]) for i in range(N_PROMPTS)]
    with echo_services.db() as db:
        session = create_session(
            db, echo_services.served_base, name="checked", prompts=prompts, source="test",
            contestants=["base", "pirate"], sampling=Sampling(max_new_tokens=16), overlap=1,
            user="admin",
        )  # fmt: skip
    generate_pending(echo_services.db, _chat, workers=2)
    with echo_services.db() as db:
        # Half the checks have their better answer on the left, half on the right.
        battles = [store.get_battle(db, i) for i in store.battle_ids(db, session.id)]
        for side in ("a", "b"):
            for battle in [b for b in battles if _careful_vote(b) == side][: N_MARKED // 2]:
                mark_check(db, battle.id, side)
        for i in range(2):
            add_check(db, "checked", f"What is {i} + 2?", f"{i + 2}.", "Seven, probably.", "admin")
        # Everyone takes turns, so the careful and the careless share the session's battles.
        vote_in_turns(db, session.id, [*CAREFUL, CARELESS], lambda who, battle: "a"
                      if who == CARELESS else _careful_vote(battle))  # fmt: skip
        # The careful took a minute over each battle; the careless voted at once.
        db.execute(
            "UPDATE battle_assignments SET assigned_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', "
            f"assigned_at, '-60 seconds') WHERE reviewer IN {CAREFUL}"
        )
    return echo_services, session


def test_every_reviewer_meets_every_check_unannounced(judged):
    services, session = judged
    with services.db() as db:
        battles = [store.get_battle(db, i) for i in store.battle_ids(db, session.id)]
        checks = [b for b in battles if b.gold_choice]
        votes = store.voted_battles(db, session.id, include_checks=True)
        progress = {who: reviewer_progress(db, session.id, who) for who in (*CAREFUL, CARELESS)}
    assert len(checks) == N_MARKED + 2
    for check in checks:
        assert sorted(v.reviewer for b, v in votes if b.id == check.id) == sorted(
            [*CAREFUL, CARELESS]
        )
    # The other battles were shared out, one reviewer each, and everyone finished.
    others = [b.id for b, _ in votes if not b.gold_choice]
    assert len(others) == len(set(others)) == N_PROMPTS - N_MARKED
    assert all(p.remaining == 0 for p in progress.values())


def test_the_careless_reviewer_is_flagged_and_the_careful_are_not(judged):
    services, _ = judged
    with services.db() as db:
        board = leaderboard(db, "checked", n_boot=100)
    quality = {q.reviewer: q for q in board.quality}
    carl = quality[CARELESS]
    assert board.quality[0].reviewer == CARELESS  # most flags first
    assert carl.accuracy.n == 10 and carl.accuracy.k < 10
    assert carl.left.rate == 1.0
    assert any(flag.startswith("chose 'a' in") for flag in carl.flags)
    assert any("faster than the answers could be read" in flag for flag in carl.flags)
    for who in CAREFUL:
        assert quality[who].accuracy.k == quality[who].accuracy.n == 10
        assert quality[who].flags == ()
        assert quality[who].median_seconds >= 59
    # Without a minimum accuracy the session shows one set of ratings.
    assert board.min_accuracy is None and board.trusted_ratings is None


def test_dropping_the_careless_moves_the_ratings_toward_the_truth(judged):
    services, _ = judged
    with services.db() as db:
        set_min_accuracy(db, "checked", 0.8)
        board = leaderboard(db, "checked", n_boot=100)
        with pytest.raises(ValidationError, match="from 0 to 1"):
            set_min_accuracy(db, "checked", 80)
    assert board.min_accuracy == 0.8 and board.dropped == [CARELESS]
    truth = 400 * math.log10(0.9 / 0.1)  # pirate is better on 9 prompts of 10

    def gap(ratings):
        by_model = {r.model: r.rating for r in ratings}
        return by_model["pirate"] - by_model["base"]

    assert abs(gap(board.trusted_ratings) - truth) < abs(gap(board.ratings) - truth)
    assert gap(board.ratings) > 0  # the careless votes blur the verdict, not reverse it


def test_checks_stay_out_of_ratings_and_preference_data(judged):
    services, session = judged
    with services.db() as db:
        board = leaderboard(db, "checked", n_boot=100)
        pairs = preferences_from_votes(db, session.id).pairs
        records = battle_records(db, "checked")
    assert {r.model for r in board.ratings} == {"base", "pirate"}
    assert board.n_battles_voted == N_PROMPTS - N_MARKED  # checks weigh nothing in ratings
    assert len(pairs) == N_PROMPTS - N_MARKED
    assert CHECK_BETTER not in str([p.chosen for p in pairs])
    # The export keeps them, each with its known better side.
    known = [r for r in records if r["model_a"] in (CHECK_BETTER, "check: worse answer")]
    assert len(known) == 2 * 4 and all(r["check_better"] in ("a", "b") for r in known)


def test_a_check_needs_a_ready_session_battle_and_two_different_answers(judged):
    services, session = judged
    with services.db() as db:
        battle_id = store.battle_ids(db, session.id)[-1]
        with pytest.raises(ValidationError, match="'a' or 'b'"):
            mark_check(db, battle_id, "left")
        with pytest.raises(ValidationError, match="the same"):
            add_check(db, "checked", "Hi", "Hello.", "Hello.", "admin")
        with pytest.raises(ValidationError, match="prompt of a check is empty"):
            add_check(db, "checked", " ", "Hello.", "Bye.", "admin")
        before = len(store.battle_ids(db, session.id))
    assert before == N_PROMPTS + 2  # nothing was added by the refused checks


def test_agreement_and_position_bias_from_votes_alone():
    votes = [VoteRecord(i, who, "a" if who == "zed" else ("a" if i % 2 else "b"), None, 30.0, 20)
             for i in range(12) for who in ("x", "y", "zed")]  # fmt: skip
    quality = {q.reviewer: q for q in reviewer_quality(votes)}
    assert quality["x"].agreement.rate == 1.0 and quality["x"].left.rate == 0.5
    assert quality["zed"].agreement.k == 6 and quality["zed"].agreement.n == 12
    assert quality["zed"].left.rate == 1.0 and quality["zed"].flags  # always the same button
    assert quality["x"].flags == () and quality["x"].median_seconds == 30.0


def test_the_terminal_marks_checks_and_sets_the_minimum(judged):
    services, session = judged
    env = {"FTAPP_HOME": str(services.settings.home), "FTAPP_BACKEND": "echo",
           "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}  # fmt: skip

    def ftapp(*args):
        return subprocess.run([sys.executable, "-m", "ftapp.cli", "arena", *args], cwd=REPO,
                              env=env, capture_output=True, text=True)  # fmt: skip

    with services.db() as db:
        last = store.battle_ids(db, session.id)[-3]  # a contestants' battle, not a check yet
    marked = ftapp("check", "mark", str(last), "--better", "b")
    assert marked.returncode == 0, marked.stderr
    assert f"battle #{last} is a check: b is the better side" in marked.stdout
    added = ftapp("check", "add", "checked", "--prompt", "2 + 2?", "--better-answer", "4",
                  "--worse-answer", "5")  # fmt: skip
    assert added.returncode == 0 and "added check battle #" in added.stdout
    assert ftapp("check", "min-accuracy", "checked", "80%").returncode == 0
    shown = ftapp("leaderboard", "--session", "checked")
    assert "without reviewers below 80% on checks (carl)" in shown.stdout
    assert "reviewer carl:" in shown.stdout and "flag: chose 'a'" in shown.stdout
    refused = ftapp("check", "min-accuracy", "checked", "lots")
    assert refused.returncode == 2 and "share or a percentage, got 'lots'" in refused.stderr
    with services.db() as db:
        assert store.get_session(db, session.id).min_gold_accuracy == 0.8  # unchanged
        assert store.get_battle(db, last).gold_choice == "b"
