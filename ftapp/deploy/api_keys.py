"""API keys: who may call the app's OpenAI-compatible API (ftapp/api.py), which models, how
often. A key is shown once, when it is made, and only its SHA-256 is stored; a revoked key
stays listed (with who revoked it) and opens nothing. Keys open the API only, never the web
app's pages or events, and a sign-in to the web app never opens the API.

The rate limit is counted here, in the web process that serves the API: a sliding minute per
key, kept in memory (a restart forgets the last minute, which costs a client at most one
minute's worth of extra requests).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

import sqlite_utils

from ftapp.errors import Conflict, NotFound, Unauthorized, ValidationError
from ftapp.names import PRODUCTION
from ftapp.store import production as store
from ftapp.store.db import write_transaction
from ftapp.store.production import ApiKey
from ftapp.timeutil import seconds_since

KEY_PREFIX = "ftk-"
SHOWN_CHARS = 10  # "ftk-" and six characters: enough to tell keys apart, nothing to guess with
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ANY_MODEL = "*"
MAX_RATE = 100_000
TOUCH_EVERY_SECONDS = 60  # how fresh a key's last_used_at is kept


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    db: sqlite_utils.Database,
    name: str,
    user: str,
    models: list[str] | None = None,
    rate_per_min: int | None = None,
) -> tuple[ApiKey, str]:
    """A new key named `name` for `models` (default: production only), at most `rate_per_min`
    requests a minute (None: no limit). Returns the key's record and the key itself, which is
    not stored and can't be shown again."""
    name = (name or "").strip()
    if not NAME_PATTERN.match(name):
        raise ValidationError(
            f"key name {name!r}: 1 to 64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    models = [m.strip() for m in (models or [PRODUCTION]) if m.strip()] or [PRODUCTION]
    if rate_per_min is not None and not (
        isinstance(rate_per_min, int) and 0 < rate_per_min <= MAX_RATE
    ):
        raise ValidationError(f"rate: a whole number of requests a minute from 1 to {MAX_RATE}")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    with write_transaction(db):
        if store.key_by_name(db, name) is not None:
            raise Conflict(f"a key named {name!r} exists; revoke it or choose another name")
        store.insert_key(db, {
            "name": name, "key_hash": key_hash(secret), "prefix": secret[:SHOWN_CHARS],
            "models_json": json.dumps(models), "rate_per_min": rate_per_min, "created_by": user,
        })  # fmt: skip
        return store.key_by_name(db, name), secret


def list_keys(db: sqlite_utils.Database) -> list[ApiKey]:
    return store.list_keys(db)


def revoke_key(db: sqlite_utils.Database, name: str, user: str) -> ApiKey:
    with write_transaction(db):
        key = store.key_by_name(db, name)
        if key is None:
            raise NotFound(f"no API key named {name!r}")
        if not key.is_active:
            raise Conflict(f"key {name!r} was revoked on {key.revoked_at[:16]} already")
        store.revoke_key(db, key.id, user)
        return store.key_by_name(db, name)


def authenticate(db: sqlite_utils.Database, authorization: str | None) -> ApiKey:
    """The active key an `Authorization: Bearer ...` header carries, or Unauthorized."""
    scheme, _, secret = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("no API key: send 'Authorization: Bearer <key>' (ftapp keys create)")
    key = store.key_by_hash(db, key_hash(secret.strip()))
    if key is None:
        raise Unauthorized("the API key is not valid")
    if not key.is_active:
        raise Unauthorized(f"the API key {key.name!r} was revoked")
    # "Last used" to the minute: a write on every request took SQLite's write lock for each.
    if key.last_used_at is None or seconds_since(key.last_used_at) >= TOUCH_EVERY_SECONDS:
        store.touch_key(db, key.id)
    return key


def may_call(key: ApiKey, model: str) -> bool:
    return ANY_MODEL in key.models or model in key.models


class RateLimiter:
    """Requests per key in the last minute; `check` refuses one over the key's rate with the
    seconds until a slot frees up."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[int, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: ApiKey) -> float | None:
        """None when the request may go ahead (and counts it); else seconds to wait."""
        if key.rate_per_min is None:
            return None
        now = self._clock()
        with self._lock:
            seen = self._seen.setdefault(key.id, deque())
            while seen and seen[0] <= now - 60.0:
                seen.popleft()
            if len(seen) >= key.rate_per_min:
                return max(0.0, seen[0] + 60.0 - now)
            seen.append(now)
            return None
