"""Canary releases on a real database with the echo backend: 10% of clients by key hash land
on the candidate (within a few points over 1,000), one client always meets the same model, a
candidate that fails on half its requests rolls itself back with its reason kept, a healthy
one does not; promoting fully and rolling back by hand; bad requests change nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from ftapp.deploy.canary_release import (
    ROLLED_BACK_BY_ITSELF,
    check_canary,
    compare,
    parse_share,
    promote_canary,
    roll_back_canary,
    start_canary,
)
from ftapp.deploy.production import in_canary, promote, stream_production_chat
from ftapp.errors import Conflict, ValidationError
from ftapp.serving.backend import Sampling
from ftapp.store import production as store
from tests.live_app import REPO

ASK = [{"role": "user", "content": "hello"}]


def ask(services, key: str) -> dict:
    reply = stream_production_chat(services.db, services.backend, services.served_base, ASK,
                                   Sampling(max_new_tokens=4), f"key:{key}",
                                   key_name=key)  # fmt: skip
    "".join(reply.pieces)
    with services.db() as db:
        request = store.get_request(db, reply.request_id)
    return {"model": request.model, "canary_id": request.canary_id}


def test_ten_percent_by_key_hash():
    share = sum(in_canary(f"client-{i}", 0.1) for i in range(1000)) / 1000
    assert 0.07 <= share <= 0.13
    assert all(in_canary("same", 0.3) == in_canary("same", 0.3) for _ in range(5))


def test_a_canary_answers_its_share_and_each_client_meets_one_model(stand_in):
    with stand_in.db() as db:
        promote(db, stand_in.served_base, "base", "alice")
        canary = start_canary(db, stand_in.served_base, "secret", parse_share("50%"), "alice")
    keys = [f"svc-{i}" for i in range(12)]
    first = {key: ask(stand_in, key) for key in keys}
    again = {key: ask(stand_in, key) for key in keys}
    assert first == again  # sticky
    assert {row["model"] for row in first.values()} == {"base", "secret"}
    assert all(row["canary_id"] == canary.id for row in first.values())
    assert all((row["model"] == "secret") == in_canary(key, 0.5) for key, row in first.items())
    with stand_in.db() as db:
        seen = compare(db, canary, min_requests=1)
    assert seen.candidate.requests + seen.stable.requests == 24
    assert seen.candidate.errors == seen.stable.errors == 0 and seen.worse(0.01) == []


def _log(db, canary, model: str, n: int, errors: int = 0, thumbs_down: int = 0) -> None:
    for i in range(n):
        request_id = store.insert_request(db, None, model, ASK, "key:x", "x", canary_id=canary.id)
        store.finish_request(db, request_id, "hi", "vLLM is not answering" if i < errors else None,
                             100, 1)  # fmt: skip
        if i >= errors and i < errors + thumbs_down:
            store.set_feedback(db, request_id, -1)


def test_a_failing_candidate_rolls_itself_back_and_a_healthy_one_does_not(stand_in):
    with stand_in.db() as db:
        promote(db, stand_in.served_base, "base", "alice")
        canary = start_canary(db, stand_in.served_base, "secret", 0.1, "alice")
        _log(db, canary, "base", 180)
        _log(db, canary, "secret", 19, errors=10)
        assert check_canary(db, min_requests=20, alpha=0.01) is None  # too few to say
        _log(db, canary, "secret", 1)
        rolled = check_canary(db, min_requests=20, alpha=0.01)
        ended = store.get_canary(db, canary.id)
    assert rolled is not None and ended.outcome == ROLLED_BACK_BY_ITSELF
    assert ended.ended_by == "ftapp" and "errors on 10 of 20 requests against 0 of 180" in (
        ended.reason)  # fmt: skip
    assert ask(stand_in, "svc-1")["model"] == "base"  # the stable model answers everyone
    with stand_in.db() as db:
        calm = start_canary(db, stand_in.served_base, "other", 0.2, "alice")
        _log(db, calm, "base", 100, errors=1)
        _log(db, calm, "other", 30, errors=1, thumbs_down=3)
        assert check_canary(db, min_requests=20, alpha=0.01) is None
        assert store.active_canary(db).id == calm.id


def test_promote_fully_or_roll_back_by_hand(stand_in):
    with stand_in.db() as db:
        promote(db, stand_in.served_base, "base", "alice")
        start_canary(db, stand_in.served_base, "secret", 0.1, "alice")
        done = promote_canary(db, stand_in.served_base, "bob")
        assert done.outcome == "promoted" and done.ended_by == "bob"
        assert store.latest_promotion(db).model == "secret"
        start_canary(db, stand_in.served_base, "other", 0.1, "alice")
        back = roll_back_canary(db, "bob", "the tone is off")
        assert (back.outcome, back.reason) == ("rolled back", "the tone is off")
        assert store.latest_promotion(db).model == "secret"
        assert [c.outcome for c in store.list_canaries(db)] == ["rolled back", "promoted"]


def test_bad_canary_requests_change_nothing(stand_in):
    with stand_in.db() as db:
        with pytest.raises(Conflict, match="nothing is in production yet"):
            start_canary(db, stand_in.served_base, "secret", 0.1, "alice")
        promote(db, stand_in.served_base, "base", "alice")
        for share, why in (("0", "more than 0%"), ("100%", "less than 100%"), ("half", "share")):
            with pytest.raises(ValidationError, match=why):
                start_canary(db, stand_in.served_base, "secret", share, "alice")
        with pytest.raises(Conflict, match="already in production"):
            start_canary(db, stand_in.served_base, "base", 0.1, "alice")
        start_canary(db, stand_in.served_base, "secret", 0.1, "alice")
        with pytest.raises(Conflict, match="is running"):
            start_canary(db, stand_in.served_base, "other", 0.1, "alice")
        assert len(store.list_canaries(db)) == 1
        roll_back_canary(db, "alice")
        with pytest.raises(Conflict, match="no canary release is running"):
            roll_back_canary(db, "alice")


def test_the_terminal_starts_shows_and_rolls_back_a_canary(stand_in):
    env = {"FTAPP_HOME": str(stand_in.settings.home), "FTAPP_BACKEND": "echo",
           "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}  # fmt: skip

    def deploy(*args):
        return subprocess.run([sys.executable, "-m", "ftapp.cli", "deploy", "canary", *args],
                              cwd=REPO, env=env, capture_output=True, text=True)  # fmt: skip

    with stand_in.db() as db:
        promote(db, stand_in.served_base, "base", "alice")
    started = deploy("start", "secret", "--share", "25%")
    assert started.returncode == 0, started.stderr
    assert "secret answers 25% of production beside base" in started.stdout
    status = json.loads(deploy("status", "--json").stdout)
    assert status["running"]["canary"]["candidate"] == "secret"
    refused = deploy("start", "other")
    assert refused.returncode == 2 and "is running" in refused.stderr
    assert deploy("rollback", "--why", "not yet").returncode == 0
    with stand_in.db() as db:
        (ended,) = store.list_canaries(db)
    assert (ended.outcome, ended.reason) == ("rolled back", "not yet")


def test_the_apps_background_thread_rolls_a_failing_canary_back(stand_in):
    """The web app's answer-queue thread watches the running canary on every pass."""
    with stand_in.db() as db:
        promote(db, stand_in.served_base, "base", "alice")
        canary = start_canary(db, stand_in.served_base, "secret", 0.1, "alice")
        _log(db, canary, "base", 40)
        _log(db, canary, "secret", 20, errors=12)
    generator = stand_in.answer_generator  # started: the app's own thread
    try:
        deadline = time.monotonic() + 60  # a guard against hanging, not a speed check
        while time.monotonic() < deadline:
            with stand_in.db() as db:
                if store.get_canary(db, canary.id).outcome is not None:
                    break
            generator.wake()
            time.sleep(0.2)
    finally:
        generator.stop()
    with stand_in.db() as db:
        ended = store.get_canary(db, canary.id)
    assert ended.outcome == ROLLED_BACK_BY_ITSELF and "errors on 12 of 20" in ended.reason
