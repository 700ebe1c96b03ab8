"""Free battles through the core: random sides, streaming both answers, votes locked once cast,
identities hidden until then, and a failed generation that doesn't leave a battle stuck."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ftapp.arena.battles import (
    battle_view,
    follow_up,
    record_vote,
    start_free_battle,
    stream_answers,
)
from ftapp.arena.contestants import add_prompt_variant, resolve_contestants, set_pool
from ftapp.errors import Conflict, Forbidden, ServingError, ValidationError
from ftapp.records import BattleStatus
from ftapp.serving.backend import Sampling
from ftapp.store import arena as store
from tests.arena.conftest import CONTESTANTS


def _battle(services, who="rita", prompt="Name a fruit", rng=None) -> int:
    with services.db() as db:
        return start_free_battle(db, services.served_base, who, prompt, Sampling(), rng)


def _answer(services, battle_id, who="rita") -> tuple[str, str]:
    stream = stream_answers(services.db, services.stream_chat, services.served_base, battle_id, who)
    return list(stream)[-1]


def test_sides_are_drawn_at_random_from_the_pool_and_recorded(echo_services):
    rng = random.Random(7)
    seen = Counter()
    for _ in range(60):
        battle_id = _battle(echo_services, rng=rng)
        with echo_services.db() as db:
            battle = store.get_battle(db, battle_id)
        assert {battle.model_a, battle.model_b} <= set(CONTESTANTS)
        assert battle.model_a != battle.model_b
        seen[battle.model_a] += 1
    # every contestant sat on the left sometimes
    assert set(seen) == set(CONTESTANTS)
    assert min(seen.values()) >= 10


def test_both_answers_stream_and_are_saved_with_their_latency(echo_services):
    battle_id = _battle(echo_services, prompt="Name a fruit")
    a, b = _answer(echo_services, battle_id)
    # The echo backend answers "[model] last user message"; prompt variants run on base.
    assert a == b == "[base] Name a fruit"
    with echo_services.db() as db:
        saved = store.get_battle(db, battle_id)
    assert saved.status == BattleStatus.READY
    assert saved.conversation_a[-1] == {"role": "assistant", "content": a}
    assert saved.conversation_b[-1] == {"role": "assistant", "content": b}
    assert saved.latency_a_ms is not None and saved.latency_b_ms is not None


def test_prompt_variants_send_their_system_prompt(echo_services):
    seen = []

    def chat(model, messages, sampling):
        seen.append((model, messages[0]))
        yield "ok"

    with echo_services.db() as db:
        set_pool(db, echo_services.served_base, ["base", "pirate"], "t")
    battle_id = _battle(echo_services)
    list(stream_answers(echo_services.db, chat, echo_services.served_base, battle_id, "rita"))
    systems = sorted(first["content"] for _, first in seen if first["role"] == "system")
    assert systems == ["Talk like a pirate."]
    assert sorted(model for model, _ in seen) == ["base", "base"]


def test_identities_are_hidden_until_the_vote_then_the_vote_is_locked(echo_services):
    battle_id = _battle(echo_services)
    _answer(echo_services, battle_id)
    with echo_services.db() as db:
        before = battle_view(db, battle_id, "rita")
        assert before.model_a is None and before.model_b is None and not before.is_locked
        after = record_vote(db, battle_id, "rita", "a", score_a=5, score_b=2, comment="A wins")
        battle = store.get_battle(db, battle_id)
        assert (after.model_a, after.model_b) == (battle.model_a, battle.model_b)
        assert after.vote.choice == "a" and after.vote.score_a == 5 and not after.vote.is_early
        with pytest.raises(Conflict, match="locked"):
            record_vote(db, battle_id, "rita", "b")
        with pytest.raises(ValidationError, match="already voted"):
            follow_up(db, battle_id, "rita", "and another?")
        # The database itself refuses a change to a cast vote.
        with pytest.raises(Exception, match="locked once cast"):
            db.execute("UPDATE votes SET choice = 'b' WHERE battle_id = ?", [battle_id])
        assert [v.choice for _, v in store.voted_battles(db)] == ["a"]


def test_a_battle_belongs_to_its_reviewer(echo_services):
    battle_id = _battle(echo_services, who="rita")
    with echo_services.db() as db:
        with pytest.raises(Forbidden):
            battle_view(db, battle_id, "mallory")
        with pytest.raises(Forbidden):
            record_vote(db, battle_id, "mallory", "a")
        assert store.voted_battles(db) == []


def test_bad_votes_change_nothing(echo_services):
    battle_id = _battle(echo_services)
    _answer(echo_services, battle_id)
    with echo_services.db() as db:
        for kwargs, message in [
            ({"choice": "left"}, "vote must be one of a, b, tie, both_bad"),
            ({"choice": "a", "score_a": 6}, "score A must be a whole number from 1 to 5"),
            ({"choice": "a", "comment": "x" * 5001}, "comment is over"),
        ]:
            choice = kwargs.pop("choice")
            with pytest.raises(ValidationError, match=message):
                record_vote(db, battle_id, "rita", choice, **kwargs)
        assert store.voted_battles(db) == []


def test_voting_while_answers_stream_counts_and_is_marked_early(echo_services):
    battle_id = _battle(echo_services)
    stream = stream_answers(
        echo_services.db, echo_services.stream_chat, echo_services.served_base, battle_id, "rita"
    )
    next(stream)  # the first piece is shown; the reviewer votes already
    with echo_services.db() as db:
        view = record_vote(db, battle_id, "rita", "tie")
    assert view.vote.is_early and view.model_a
    for _ in stream:
        pass
    with echo_services.db() as db:
        assert store.get_battle(db, battle_id).status == BattleStatus.READY


def test_a_failed_generation_marks_the_battle_failed_without_naming_models(echo_services):
    def chat(model, messages, sampling):
        if messages[0]["role"] == "system":
            raise ServingError(f"vLLM refused model {model!r}: pirate is broken")
        yield "fine"

    with echo_services.db() as db:
        set_pool(db, echo_services.served_base, ["base", "pirate"], "t")
    battle_id = _battle(echo_services)
    results = list(
        stream_answers(echo_services.db, chat, echo_services.served_base, battle_id, "rita")
    )
    assert results  # the good side still streamed
    with echo_services.db() as db:
        view = battle_view(db, battle_id, "rita")
        assert view.status == BattleStatus.FAILED
        assert "pirate" not in view.error and "base" not in view.error
        assert "model A" in view.error or "model B" in view.error
        with pytest.raises(ValidationError, match="can't be judged"):
            record_vote(db, battle_id, "rita", "a")
    # The reviewer simply starts the next battle.
    assert _battle(echo_services)


def test_stopping_early_keeps_what_was_generated(echo_services):
    battle_id = _battle(echo_services, prompt="one two three four five six")
    stream = stream_answers(
        echo_services.db, echo_services.stream_chat, echo_services.served_base, battle_id, "rita"
    )
    next(stream)
    stream.close()  # Stop, or the page went away
    with echo_services.db() as db:
        battle = store.get_battle(db, battle_id)
    assert battle.status == BattleStatus.READY
    assert battle.conversation_a[-1]["role"] == "assistant"


def test_follow_ups_continue_each_side_own_conversation(echo_services):
    battle_id = _battle(echo_services, prompt="first question")
    first = _answer(echo_services, battle_id)
    with echo_services.db() as db:
        follow_up(db, battle_id, "rita", "second question")
    second = _answer(echo_services, battle_id)
    assert second[0].endswith("second question")
    with echo_services.db() as db:
        battle = store.get_battle(db, battle_id)
    assert [m["role"] for m in battle.conversation_a] == ["user", "assistant"] * 2
    assert battle.conversation_a[1]["content"] == first[0]
    assert battle.prompt == [{"role": "user", "content": "first question"}]


def test_free_battles_need_two_enabled_contestants(echo_services):
    with echo_services.db() as db:
        store.replace_pool(db, ["base"], "t")
        with pytest.raises(ValidationError, match="at least two enabled contestants"):
            start_free_battle(db, echo_services.served_base, "rita", "hi", Sampling())
        with pytest.raises(ValidationError, match="at least two"):
            set_pool(db, echo_services.served_base, ["base"], "t")
        with pytest.raises(ValidationError, match="unknown contestant 'nope'"):
            set_pool(db, echo_services.served_base, ["base", "nope"], "t")
        with pytest.raises(ValidationError, match="prompt is empty"):
            start_free_battle(db, echo_services.served_base, "rita", "  ", Sampling())
        assert db["battles"].count == 0


def test_prompt_variant_names_are_checked(echo_services):
    base = echo_services.served_base
    with echo_services.db() as db:
        with pytest.raises(Conflict):
            add_prompt_variant(db, base, "concise", "again", user="t")
        with pytest.raises(Conflict):
            add_prompt_variant(db, base, "base", "x", user="t")
        with pytest.raises(ValidationError, match="name"):
            add_prompt_variant(db, base, "../etc", "x", user="t")
        with pytest.raises(ValidationError, match="system prompt"):
            add_prompt_variant(db, base, "empty", " ", user="t")
        with pytest.raises(ValidationError, match="unknown model"):
            add_prompt_variant(db, base, "other", "x", model="missing", user="t")
        assert [c.name for c in resolve_contestants(db, base, ["pirate", "base"])] == [
            "pirate",
            "base",
        ]
