"""API keys in a real SQLite file: made once and shown once, stored as a hash, revoked for
good, refused with a reason; the per-key rate limit on a clock the test drives."""

from __future__ import annotations

import hashlib

import pytest

from ftapp.deploy.api_keys import RateLimiter, authenticate, create_key, may_call, revoke_key
from ftapp.errors import Conflict, NotFound, Unauthorized, ValidationError
from ftapp.store.db import open_db


@pytest.fixture
def db(tmp_path):
    database = open_db(tmp_path / "ftapp.db")
    yield database
    database.close()


def test_a_key_is_shown_once_and_stored_as_its_hash(db):
    key, secret = create_key(db, "billing-bot", "alice", rate_per_min=30)
    assert secret.startswith("ftk-") and len(secret) > 40
    assert key.models == ["production"] and key.rate_per_min == 30 and key.is_active
    (row,) = db.query("SELECT * FROM api_keys")
    assert secret not in str(row)
    assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert row["prefix"] == secret[:10]
    found = authenticate(db, f"Bearer {secret}")
    assert found.name == "billing-bot" and found.last_used_at is None  # touched after reading
    used = authenticate(db, f"bearer  {secret} ").last_used_at
    assert used is not None
    # Within the minute a request reads the key and writes nothing; later, it is noted again.
    authenticate(db, f"Bearer {secret}")
    assert db.execute("SELECT last_used_at FROM api_keys").fetchone()[0] == used
    db.execute("UPDATE api_keys SET last_used_at = '2026-01-01T00:00:00.000+00:00'")
    authenticate(db, f"Bearer {secret}")
    assert db.execute("SELECT last_used_at FROM api_keys").fetchone()[0] >= used  # noted now


@pytest.mark.parametrize(
    ("header", "why"),
    [(None, "no API key"), ("", "no API key"), ("Basic abc", "no API key"),
     ("Bearer ftk-wrong", "not valid")],
)  # fmt: skip
def test_a_missing_or_wrong_key_is_refused(db, header, why):
    create_key(db, "bot", "alice")
    with pytest.raises(Unauthorized, match=why):
        authenticate(db, header)


def test_a_revoked_key_opens_nothing_and_stays_listed(db):
    _, secret = create_key(db, "bot", "alice")
    revoked = revoke_key(db, "bot", "bob")
    assert revoked.revoked_by == "bob" and not revoked.is_active
    with pytest.raises(Unauthorized, match="revoked"):
        authenticate(db, f"Bearer {secret}")
    with pytest.raises(Conflict, match="revoked on"):
        revoke_key(db, "bot", "bob")
    with pytest.raises(NotFound):
        revoke_key(db, "nobody", "bob")
    with pytest.raises(Conflict, match="exists"):
        create_key(db, "bot", "alice")  # the name stays taken: the history keeps it


@pytest.mark.parametrize(
    ("name", "models", "rate", "why"),
    [("", None, None, "key name"), ("has space", None, None, "key name"),
     ("ok", None, 0, "rate"), ("ok", None, 10**9, "rate")],
)  # fmt: skip
def test_bad_key_settings_are_refused_and_nothing_is_written(db, name, models, rate, why):
    with pytest.raises(ValidationError, match=why):
        create_key(db, name, "alice", models, rate)
    assert db["api_keys"].count == 0


def test_models_a_key_may_call(db):
    production_only, _ = create_key(db, "a", "alice")
    named, _ = create_key(db, "b", "alice", ["production", "support-v1"])
    anything, _ = create_key(db, "c", "alice", ["*"])
    assert may_call(production_only, "production") and not may_call(production_only, "base")
    assert may_call(named, "support-v1") and not may_call(named, "support-v2")
    assert may_call(anything, "support-v2")


def test_the_rate_is_a_sliding_minute_per_key(db):
    now = [1000.0]
    limiter = RateLimiter(clock=lambda: now[0])
    slow, _ = create_key(db, "slow", "alice", rate_per_min=2)
    free, _ = create_key(db, "free", "alice")
    assert limiter.check(slow) is None and limiter.check(slow) is None
    now[0] += 20
    assert limiter.check(slow) == pytest.approx(40.0)  # the first frees up at 60 s
    assert all(limiter.check(free) is None for _ in range(100))
    now[0] += 40.5
    assert limiter.check(slow) is None
