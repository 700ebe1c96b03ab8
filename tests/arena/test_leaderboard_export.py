"""The leaderboard assembled from votes in the database, and the exports: battles and votes as
CSV and JSONL (formulas neutralized), and preference pairs the Data tab imports."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from ftapp.arena.battles import record_vote
from ftapp.arena.export import battle_records, preference_records, write_battles, write_preferences
from ftapp.arena.generation import generate_pending
from ftapp.arena.leaderboard import leaderboard
from ftapp.arena.prompts import Prompt
from ftapp.arena.ratings import Outcome, rating_table
from ftapp.arena.sessions import create_session, next_battle
from ftapp.data.importer import import_file
from ftapp.errors import ValidationError
from ftapp.serving.backend import Sampling
from ftapp.store import arena as store
from tests.arena.conftest import reviewer
from tests.live_app import REPO


def _voted_session(services, policy, name="s1", n_prompts=6, reviewers=("rita", "sam")):
    """A session of base vs pirate where each reviewer votes by `policy(battle, who)`."""
    prompts = [Prompt([{"role": "user", "content": f"=SUM(A{i}) question {i}"}]) for i in
               range(n_prompts)]  # fmt: skip
    with services.db() as db:
        session = create_session(
            db, services.served_base, name=name, prompts=prompts, source="test",
            contestants=["base", "pirate"], sampling=Sampling(max_new_tokens=16),
            overlap=len(reviewers), user="admin",
        )  # fmt: skip
    generate_pending(services.db, _chat, workers=2)
    with services.db() as db:
        for who in reviewers:
            while (battle_id := next_battle(db, session.id, reviewer(who))) is not None:
                battle = store.get_battle(db, battle_id)
                record_vote(db, battle_id, who, policy(battle, who))
    return session


def _chat(model, messages, sampling):
    """Pirate (base with a system prompt) and base give different answers."""
    pirate = messages[0]["role"] == "system"
    yield ("Arr! " if pirate else "") + messages[-1]["content"]


def _pirate_wins(battle, who):
    return "a" if battle.model_a == "pirate" else "b"


def test_leaderboard_of_a_session_matches_its_votes(echo_services):
    _voted_session(echo_services, _pirate_wins)
    with echo_services.db() as db:
        board = leaderboard(db, "s1", n_boot=200)
        everything = leaderboard(db, None, n_boot=200)
    assert board.n_votes == 12 and board.n_battles_voted == 6
    assert [r.model for r in board.ratings] == ["pirate", "base"]
    base = next(r for r in board.ratings if r.model == "base")
    assert base.rating == 1000 and (base.wins, base.losses) == (0, 12)
    (verdict,) = board.verdicts
    assert verdict.is_decided and verdict.winner == "pirate"
    assert verdict.text.startswith("pirate beats base (win rate 100%")
    assert board.matrix_models == ["base", "pirate"] and board.matrix[1][0] == 1.0
    (pair,) = board.reviewer_pairs
    assert (pair.reviewer_1, pair.reviewer_2, pair.n_shared) == ("rita", "sam", 6)
    assert pair.percent_agreement == 1.0
    assert [r.n_votes for r in board.reviewers] == [6, 6]
    assert everything.scope == "all battles" and everything.n_votes == 12
    # The same votes, straight into the rating function, give the same table.
    with echo_services.db() as db:
        outcomes = [Outcome(b.model_a, b.model_b, v.choice.value) for b, v in
                    store.voted_battles(db)]  # fmt: skip
    assert rating_table(outcomes, n_boot=200) == board.ratings
    json.dumps(board.to_dict())  # JSON-ready for the CLI


def test_disagreeing_reviewers_show_in_kappa(echo_services):
    def policy(battle, who):
        if who == "rita":
            return "a"  # always the left side: position bias
        return "a" if battle.model_a == "pirate" else "b"

    _voted_session(echo_services, policy, n_prompts=10)
    with echo_services.db() as db:
        board = leaderboard(db, "s1", n_boot=100)
    (pair,) = board.reviewer_pairs
    assert pair.n_shared == 10 and pair.percent_agreement < 1
    rita = next(r for r in board.reviewers if r.reviewer == "rita")
    assert (rita.a, rita.b) == (10, 0)
    assert board.position_bias.left_wins >= 10


def test_battle_exports_have_every_vote_and_neutralize_formulas(echo_services, tmp_path):
    _voted_session(echo_services, _pirate_wins)
    with echo_services.db() as db:
        unvoted = next_battle(db, store.get_session(db, "s1").id, reviewer("tom"))
        assert unvoted is None  # overlap reached: no battle left for a third reviewer
        n_csv = write_battles(db, tmp_path / "b.csv", "csv")
        n_jsonl = write_battles(db, tmp_path / "b.jsonl", "jsonl", session="s1")
        records = battle_records(db)
    assert n_csv == n_jsonl == len(records) == 12
    rows = list(csv.DictReader((tmp_path / "b.csv").open(encoding="utf-8", newline="")))
    assert len(rows) == 12
    assert all(row["winner"] == "pirate" for row in rows)
    # Cells that a spreadsheet would run start with a quote; JSONL keeps the text as it is.
    # (Both sides together: which contestant sits left is drawn per battle.)
    starts = {row[side][:6] for row in rows for side in ("answer_a", "answer_b")}
    assert starts == {"'=SUM(", "Arr! ="}
    assert not any(value.startswith("=") for row in rows for value in row.values())
    lines = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert lines[0]["prompt"][0]["content"].startswith("=SUM(")
    assert {line["reviewer"] for line in lines} == {"rita", "sam"}


def test_preferences_import_back_into_a_dataset(echo_services, tmp_path, count_tokens):
    def chat(model, messages, sampling):
        yield "Arr, matey!" if messages[0]["role"] == "system" else "Hello."

    with echo_services.db() as db:
        session = create_session(
            db, echo_services.served_base, name="prefs",
            prompts=[Prompt([{"role": "user", "content": f"greet me {i}"}]) for i in range(3)],
            source="t", contestants=["base", "pirate"], sampling=Sampling(), overlap=2,
            user="admin",
        )  # fmt: skip
    generate_pending(echo_services.db, chat, workers=1)
    choices = {"rita": "pirate", "sam": "base"}
    with echo_services.db() as db:
        for who in ("rita", "sam"):
            for _ in range(3):
                battle_id = next_battle(db, session.id, reviewer(who))
                battle = store.get_battle(db, battle_id)
                prompt_number = int(battle.prompt[0]["content"].split()[-1])
                # They agree on prompts 0 and 1; on prompt 2 they cancel out.
                want = "pirate" if prompt_number < 2 else choices[who]
                record_vote(db, battle_id, who, "a" if battle.model_a == want else "b")
        rows = preference_records(db, "prefs")
        assert write_preferences(db, tmp_path / "prefs.jsonl", "prefs") == 2
        with pytest.raises(ValidationError, match="JSONL"):
            write_preferences(db, tmp_path / "prefs.csv", "prefs")
    assert sorted(r["prompt"][0]["content"] for r in rows) == ["greet me 0", "greet me 1"]
    assert all(r["chosen"] == [{"role": "assistant", "content": "Arr, matey!"}] for r in rows)
    assert all(r["rejected"] == [{"role": "assistant", "content": "Hello."}] for r in rows)
    with echo_services.db() as db:
        report = import_file(db, tmp_path / "prefs.jsonl", "from-arena",
                             count_tokens=count_tokens, max_tokens=512)  # fmt: skip
    assert report.source_format == "preference" and report.n_imported == 2
    assert not report.problems


def test_exports_refuse_when_there_is_nothing(echo_services, tmp_path):
    with echo_services.db() as db:
        with pytest.raises(ValidationError, match="no battles yet"):
            write_battles(db, tmp_path / "x.csv")
        with pytest.raises(ValidationError, match="no decided votes"):
            write_preferences(db, tmp_path / "x.jsonl")
        with pytest.raises(ValidationError, match="csv, jsonl"):
            write_battles(db, tmp_path / "x.xml", "xml")
    assert [p.name for p in tmp_path.iterdir()] == ["home"]  # nothing half-written


def test_the_cli_gives_the_same_numbers(echo_services, tmp_path):
    _voted_session(echo_services, _pirate_wins)
    env = {"FTAPP_HOME": str(echo_services.settings.home), "FTAPP_BACKEND": "echo",
           "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "ftapp.cli", "arena", "leaderboard", "--session", "s1", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    printed = json.loads(run.stdout)
    with echo_services.db() as db:
        board = leaderboard(db, "s1", count_tokens=echo_services.count_tokens.count_text)
        expected = json.loads(json.dumps(board.to_dict()))
    assert printed == expected
    out = tmp_path / "prefs.jsonl"
    run = subprocess.run(
        [sys.executable, "-m", "ftapp.cli", "arena", "export", "--out", str(out),
         "--format", "preference"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "wrote 6 preference pairs" in run.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "ftapp.cli", "arena", "leaderboard", "--session", "nope"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "no evaluation session 'nope'" in bad.stderr
