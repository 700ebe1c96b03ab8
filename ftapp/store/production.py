"""Tables of production: `promotions` (which model answers under the reserved name
"production"; the newest row is the current one, a rollback is a new row, and the history is
never rewritten) and `production_requests` (what the production chat answered, how fast, and
the thumbs up or down it got). The rules (what may be promoted, what a rollback goes back to)
live in ftapp/deploy/production.py, and which rated replies become training data in
ftapp/deploy/feedback.py; this module is only the SQL and the records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from ftapp.errors import NotFound
from ftapp.store.db import to_record
from ftapp.timeutil import utc_now

# The model name clients use for whatever is promoted; no job, variant or prompt variant may
# take it. Defined here, below the serving layer, so that ftapp/serving/setup.py can resolve it
# without importing the deployment rules (which import the serving layer themselves).
# What a production request's `error` says until its reply has been written back: a row left
# like this means the app stopped while it was answering.
UNFINISHED = "unfinished: the app stopped while answering"


@dataclass(frozen=True)
class Promotion:
    id: int
    model: str  # "base" or a model variant's name
    is_rollback: bool
    note: str
    created_at: str
    created_by: str
    override_reason: str | None = None  # why it went ahead although the gate objected
    gate_json: str | None = None  # what the promotion gate saw (deploy/gate.py)


@dataclass(frozen=True)
class ProductionRequest:
    id: int
    promotion_id: int | None
    model: str  # the promoted model that answered, not "production"
    messages: list[dict[str, str]]
    answer: str
    error: str | None
    latency_ms: int
    n_tokens: int | None
    feedback: int | None  # 1 thumbs up, -1 thumbs down, None not rated
    feedback_at: str | None
    created_at: str
    created_by: str
    key_name: str | None = None  # the API key that asked; None from the Playground
    prompt_tokens: int | None = None
    ttft_ms: int | None = None  # from the request to its first piece
    feedback_comment: str | None = None
    text_kept: bool = True  # False: the prompt and answer were never stored, or erased
    canary_id: int | None = None  # made while this canary release ran (either model answered)
    finish_reason: str | None = None  # "length" (out of new tokens) or "stop"; None: failed


# --- promotions -------------------------------------------------------------------------------


def insert_promotion(
    db: sqlite_utils.Database, model: str, is_rollback: bool, note: str, user: str,
    override_reason: str | None = None, gate_json: str | None = None,
) -> Promotion:  # fmt: skip
    row = {"model": model, "is_rollback": int(is_rollback), "note": note,
           "created_at": utc_now(), "created_by": user, "override_reason": override_reason,
           "gate_json": gate_json}  # fmt: skip
    promotion_id = db["promotions"].insert(row).last_pk
    return get_promotion(db, promotion_id)


def get_promotion(db: sqlite_utils.Database, promotion_id: int) -> Promotion:
    row = next(db.query("SELECT * FROM promotions WHERE id = ?", [promotion_id]), None)
    if row is None:
        raise NotFound(f"no promotion #{promotion_id}")
    return _promotion(row)


def latest_promotion(db: sqlite_utils.Database) -> Promotion | None:
    row = next(db.query("SELECT * FROM promotions ORDER BY id DESC LIMIT 1"), None)
    return _promotion(row) if row else None


def list_promotions(db: sqlite_utils.Database) -> list[Promotion]:
    """Every promotion and rollback, oldest first."""
    return [_promotion(row) for row in db.query("SELECT * FROM promotions ORDER BY id")]


def _promotion(row: dict[str, Any]) -> Promotion:
    return to_record(Promotion, row, is_rollback=bool(row["is_rollback"]))


# --- production requests ----------------------------------------------------------------------


def insert_request(
    db: sqlite_utils.Database,
    promotion_id: int | None,
    model: str,
    messages: list[dict[str, str]],
    user: str,
    key_name: str | None = None,
    prompt_tokens: int | None = None,
    keep_text: bool = True,
    canary_id: int | None = None,
) -> int:
    """A request as it starts: marked unfinished until `finish_request` writes its reply.
    Without `keep_text` its prompt is not stored (nor, later, its answer)."""
    row = {"promotion_id": promotion_id, "model": model,
           "messages_json": json.dumps(messages if keep_text else []), "answer": "",
           "error": UNFINISHED, "latency_ms": 0, "created_at": utc_now(), "created_by": user,
           "key_name": key_name, "prompt_tokens": prompt_tokens,
           "text_kept": int(keep_text), "canary_id": canary_id}  # fmt: skip
    return db["production_requests"].insert(row).last_pk


def finish_request(
    db: sqlite_utils.Database,
    request_id: int,
    answer: str,
    error: str | None,
    latency_ms: int,
    n_tokens: int,
    ttft_ms: int | None = None,
    finish_reason: str | None = None,
) -> None:
    db.execute(
        "UPDATE production_requests SET answer = CASE WHEN text_kept THEN ? ELSE '' END, "
        "error = ?, latency_ms = ?, n_tokens = ?, ttft_ms = ?, finish_reason = ? WHERE id = ?",
        [answer, error, latency_ms, n_tokens, ttft_ms, finish_reason, request_id],
    )


def erase_texts_before(db: sqlite_utils.Database, cutoff: str) -> int:
    """Erase the prompts and answers of requests made before `cutoff`; their numbers stay."""
    return db.execute(
        "UPDATE production_requests SET messages_json = '[]', answer = '', text_kept = 0 "
        "WHERE created_at < ? AND text_kept",
        [cutoff],
    ).rowcount


def get_request(db: sqlite_utils.Database, request_id: int) -> ProductionRequest:
    row = next(db.query("SELECT * FROM production_requests WHERE id = ?", [request_id]), None)
    if row is None:
        raise NotFound(f"no production request #{request_id}")
    return to_record(ProductionRequest, row, messages=json.loads(row["messages_json"]),
                     text_kept=bool(row["text_kept"]))  # fmt: skip


def set_feedback(
    db: sqlite_utils.Database, request_id: int, value: int | None, comment: str | None = None
) -> None:
    db.execute(
        "UPDATE production_requests SET feedback = ?, feedback_at = ?, feedback_comment = ? "
        "WHERE id = ?",
        [value, utc_now() if value is not None else None, comment, request_id],
    )


# --- canary releases --------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryRelease:
    id: int
    candidate: str  # answers `share` of production's traffic
    stable: str  # what was in production when it started, answering the rest
    share: float
    started_at: str
    started_by: str
    ended_at: str | None
    ended_by: str | None  # "ftapp" when it rolled back by itself
    outcome: str | None  # promoted, rolled back, rolled back by itself; None while it runs
    reason: str | None


def insert_canary(db: sqlite_utils.Database, candidate: str, stable: str, share: float,
                  user: str) -> CanaryRelease:  # fmt: skip
    row = {"candidate": candidate, "stable": stable, "share": share, "started_at": utc_now(),
           "started_by": user}  # fmt: skip
    return get_canary(db, db["canary_releases"].insert(row).last_pk)


def get_canary(db: sqlite_utils.Database, canary_id: int) -> CanaryRelease:
    row = next(db.query("SELECT * FROM canary_releases WHERE id = ?", [canary_id]), None)
    if row is None:
        raise NotFound(f"no canary release #{canary_id}")
    return to_record(CanaryRelease, row)


def active_canary(db: sqlite_utils.Database) -> CanaryRelease | None:
    row = next(db.query("SELECT * FROM canary_releases WHERE ended_at IS NULL "
                        "ORDER BY id DESC LIMIT 1"), None)  # fmt: skip
    return None if row is None else to_record(CanaryRelease, row)


def list_canaries(db: sqlite_utils.Database) -> list[CanaryRelease]:
    return [to_record(CanaryRelease, row)
            for row in db.query("SELECT * FROM canary_releases ORDER BY id DESC")]  # fmt: skip


def end_canary(db: sqlite_utils.Database, canary_id: int, outcome: str, user: str,
               reason: str | None) -> None:  # fmt: skip
    db.execute("UPDATE canary_releases SET ended_at = ?, ended_by = ?, outcome = ?, reason = ? "
               "WHERE id = ? AND ended_at IS NULL",
               [utc_now(), user, outcome, reason, canary_id])  # fmt: skip


def canary_rows(db: sqlite_utils.Database, canary_id: int) -> list[dict[str, Any]]:
    """The requests of a canary's window: which model answered, error, latency, thumbs."""
    return list(db.query("SELECT model, error, latency_ms, feedback FROM production_requests "
                         "WHERE canary_id = ? ORDER BY id", [canary_id]))  # fmt: skip


# --- API keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str  # the key's first characters, to tell keys apart in a list
    models: list[str]  # what it may call: "production", named variants, or "*" for any
    rate_per_min: int | None  # None: no limit
    created_at: str
    created_by: str
    revoked_at: str | None
    revoked_by: str | None
    last_used_at: str | None

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


def insert_key(db: sqlite_utils.Database, row: dict[str, Any]) -> None:
    db["api_keys"].insert({**row, "created_at": utc_now()})


def key_by_hash(db: sqlite_utils.Database, key_hash: str) -> ApiKey | None:
    row = next(db.query("SELECT * FROM api_keys WHERE key_hash = ?", [key_hash]), None)
    return None if row is None else _key(row)


def key_by_name(db: sqlite_utils.Database, name: str) -> ApiKey | None:
    row = next(db.query("SELECT * FROM api_keys WHERE name = ?", [name]), None)
    return None if row is None else _key(row)


def list_keys(db: sqlite_utils.Database) -> list[ApiKey]:
    return [_key(row) for row in db.query("SELECT * FROM api_keys ORDER BY id")]


def revoke_key(db: sqlite_utils.Database, key_id: int, user: str) -> None:
    db.execute("UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE id = ?",
               [utc_now(), user, key_id])  # fmt: skip


def touch_key(db: sqlite_utils.Database, key_id: int) -> None:
    db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", [utc_now(), key_id])


def _key(row: dict[str, Any]) -> ApiKey:
    row = {k: v for k, v in row.items() if k != "key_hash"}  # never leaves the store
    return to_record(ApiKey, row, models=json.loads(row["models_json"]))


def request_rows(db: sqlite_utils.Database, since: str | None = None) -> list[dict[str, Any]]:
    """What monitoring needs of each request (oldest first), from `since` on if given."""
    sql = ("SELECT created_at, model, error, latency_ms, feedback, key_name, ttft_ms "
           "FROM production_requests")  # fmt: skip
    params: list[Any] = []
    if since:
        sql += " WHERE created_at >= ?"
        params.append(since)
    return list(db.query(sql + " ORDER BY created_at, id", params))


def model_rows(db: sqlite_utils.Database, model: str) -> list[dict[str, Any]]:
    """What the drop check and the traffic drift need of every request a model answered."""
    return list(
        db.query(
            "SELECT error, latency_ms, feedback, created_at, prompt_tokens, n_tokens, "
            "finish_reason, answer, text_kept FROM production_requests WHERE model = ? "
            "ORDER BY created_at, id",
            [model],
        )
    )


def feedback_rows(
    db: sqlite_utils.Database, since: str | None = None, model: str | None = None
) -> list[dict[str, Any]]:
    """What counting the feedback needs of each request (oldest first): its id, thumbs, error,
    whether it has an answer and whether its text was kept; from `since` on and of one
    promoted `model` if given."""
    where, params = _window(since, model)
    sql = ("SELECT id, feedback, error, answer != '' AS has_answer, text_kept "
           "FROM production_requests")  # fmt: skip
    return list(db.query(sql + where + " ORDER BY created_at, id", params))


def rated_requests(
    db: sqlite_utils.Database, since: str | None = None, model: str | None = None
) -> list[ProductionRequest]:
    """The requests with a thumbs up or down (oldest first), failed ones too, in the same
    window as `feedback_rows`."""
    where, params = _window(since, model)
    where += (" AND" if where else " WHERE") + " feedback IS NOT NULL"
    rows = db.query("SELECT * FROM production_requests" + where + " ORDER BY created_at, id",
                    params)  # fmt: skip
    return [to_record(ProductionRequest, row, messages=json.loads(row["messages_json"]),
                      text_kept=bool(row["text_kept"])) for row in rows]  # fmt: skip


def _window(since: str | None, model: str | None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if since:
        clauses.append("created_at >= ?")
        params.append(since)
    if model:
        clauses.append("model = ?")
        params.append(model)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
