"""Votes to preference data, hand-worked: a win gives a pair, a tie nothing, "both bad" two
bad unpaired rows, a 2-1 vote the majority's pair, a 1-1 vote nothing; every rule counted."""

from __future__ import annotations

import pytest

from ftapp.arena.battles import record_vote
from ftapp.arena.generation import generate_pending
from ftapp.arena.preferences import RULES, decide, votes_to_dataset
from ftapp.arena.prompts import Prompt
from ftapp.arena.sessions import create_session, next_battle
from ftapp.errors import Conflict, ValidationError
from ftapp.records import Battle, BattleStatus, DatasetKind, Vote, VoteChoice
from ftapp.serving.backend import Sampling
from ftapp.store import arena as arena_store
from ftapp.store import datasets as dataset_store
from ftapp.store import versions as version_store
from tests.arena.conftest import reviewer

PROMPT = [{"role": "user", "content": "Greet me."}]
ARR = [{"role": "assistant", "content": "Arr!"}]
HELLO = [{"role": "assistant", "content": "Hello."}]


def battle(battle_id: int, a=ARR, b=HELLO, status=BattleStatus.READY) -> Battle:
    return Battle(battle_id, 1, None, "pirate", "base", PROMPT + a, PROMPT + b, {}, 1, 1, status,
                  None, "2026-12-04T00:00:00", "t")  # fmt: skip


def votes(battle_id: int, *choices: str) -> list[Vote]:
    return [Vote(n, battle_id, f"r{n}", VoteChoice(c), None, None, "", False, "")
            for n, c in enumerate(choices)]  # fmt: skip


def counts(**nonzero: int) -> dict[str, int]:
    return {rule: nonzero.get(rule.replace(" ", "_"), 0) for rule in RULES}


def test_a_win_gives_one_pair_with_the_winner_chosen():
    result = decide([(battle(1), votes(1, "a")), (battle(2), votes(2, "b"))])
    assert [(p.battle_id, p.prompt, p.chosen, p.rejected) for p in result.pairs] == [
        (1, PROMPT, ARR, HELLO),
        (2, PROMPT, HELLO, ARR),
    ]
    assert result.labelled == [] and result.counts == counts(win=2)


def test_a_tie_gives_nothing_and_both_bad_two_bad_unpaired_rows():
    result = decide([(battle(1), votes(1, "tie")), (battle(2), votes(2, "both_bad"))])
    assert result.pairs == []
    assert [(r.battle_id, r.answer, r.is_good) for r in result.labelled] == [
        (2, ARR, False),
        (2, HELLO, False),
    ]
    assert result.counts == counts(tie=1, both_bad=1)


def test_the_majority_decides_and_an_even_split_is_dropped():
    result = decide([
        (battle(1), votes(1, "a", "a", "b")),  # 2-1 for A
        (battle(2), votes(2, "a", "b")),  # 1-1
        (battle(3), votes(3, "both_bad", "both_bad", "tie")),  # 2-1 both bad
        (battle(4), votes(4, "a", "b", "tie")),  # 1-1-1
    ])  # fmt: skip
    assert [(p.battle_id, p.chosen) for p in result.pairs] == [(1, ARR)]
    assert [r.battle_id for r in result.labelled] == [3, 3]
    assert result.counts == counts(win=1, both_bad=1, majority=2, split=2)


def test_the_same_answers_or_a_failed_battle_give_nothing():
    result = decide([
        (battle(1, a=HELLO, b=HELLO), votes(1, "a")),
        (battle(2, status=BattleStatus.FAILED), votes(2, "b")),
    ])  # fmt: skip
    assert result.pairs == [] and result.labelled == []
    assert result.counts == counts(same_answers=1, failed=1)


def test_no_votes_give_nothing_with_every_rule_at_zero():
    assert decide([]).counts == counts()


def test_a_sessions_votes_become_a_frozen_preference_version(echo_services, count_tokens):
    def chat(model, messages, sampling):
        yield "Arr, matey!" if messages[0]["role"] == "system" else "Hello."

    services = echo_services
    with services.db() as db:
        session = create_session(
            db, services.served_base, name="greetings", source="t",
            prompts=[Prompt([{"role": "user", "content": f"greet me {i}"}]) for i in range(3)],
            contestants=["base", "pirate"], sampling=Sampling(), overlap=1, user="admin",
        )  # fmt: skip
        with pytest.raises(ValidationError, match="no vote gives a preference row yet"):
            votes_to_dataset(db, "empty", session="greetings", user="t",
                             count_tokens=count_tokens, max_tokens=512)  # fmt: skip
        assert dataset_store.find_dataset(db, "empty") is None
    generate_pending(services.db, chat, workers=1)
    with services.db() as db:
        for _ in range(3):  # prompt 0: pirate wins; 1: both bad; 2: a tie
            battle = arena_store.get_battle(db, next_battle(db, session.id, reviewer("rita")))
            number = int(battle.prompt[0]["content"].split()[-1])
            choice = {0: "a" if battle.model_a == "pirate" else "b", 1: "both_bad", 2: "tie"}
            record_vote(db, battle.id, "rita", choice[number])
        version, found = votes_to_dataset(db, "from-votes", session="greetings", user="t",
                                          count_tokens=count_tokens, max_tokens=512,
                                          ratios=(1.0, 0.0, 0.0))  # fmt: skip
        assert found.counts == counts(win=1, both_bad=1, tie=1)
        dataset = dataset_store.get_dataset(db, "from-votes")
        assert dataset.kind == DatasetKind.PREFERENCE and "win: 1" in dataset.description
        rows = list(version_store.version_rows(db, version.id))
        assert version.label == "from-votes@v1" and len(rows) == 3
        (pair,) = [r for r in rows if r["rejected"]]
        assert pair["messages"][-1]["content"] == "Arr, matey!"
        assert pair["rejected"] == [{"role": "assistant", "content": "Hello."}]
        assert sorted(r["label"] for r in rows if not r["rejected"]) == [False, False]
        linked = {e["battle_id"] for e in db["examples"].rows}
        assert linked == {p.battle_id for p in found.pairs} | {r.battle_id for r in found.labelled}
        with pytest.raises(Conflict, match="exists"):
            votes_to_dataset(db, "from-votes", session="greetings", user="t",
                             count_tokens=count_tokens, max_tokens=512)  # fmt: skip
