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
    promotion_id: int,
    model: str,
    messages: list[dict[str, str]],
    user: str,
) -> int:
    """A request as it starts: marked unfinished until `finish_request` writes its reply."""
    row = {"promotion_id": promotion_id, "model": model, "messages_json": json.dumps(messages),
           "answer": "", "error": UNFINISHED, "latency_ms": 0, "created_at": utc_now(),
           "created_by": user}  # fmt: skip
    return db["production_requests"].insert(row).last_pk


def finish_request(
    db: sqlite_utils.Database,
    request_id: int,
    answer: str,
    error: str | None,
    latency_ms: int,
    n_tokens: int,
) -> None:
    db.execute(
        "UPDATE production_requests SET answer = ?, error = ?, latency_ms = ?, n_tokens = ? "
        "WHERE id = ?",
        [answer, error, latency_ms, n_tokens, request_id],
    )


def get_request(db: sqlite_utils.Database, request_id: int) -> ProductionRequest:
    row = next(db.query("SELECT * FROM production_requests WHERE id = ?", [request_id]), None)
    if row is None:
        raise NotFound(f"no production request #{request_id}")
    return to_record(ProductionRequest, row, messages=json.loads(row["messages_json"]))


def set_feedback(db: sqlite_utils.Database, request_id: int, value: int | None) -> None:
    db.execute(
        "UPDATE production_requests SET feedback = ?, feedback_at = ? WHERE id = ?",
        [value, utc_now() if value is not None else None, request_id],
    )


def request_rows(db: sqlite_utils.Database, since: str | None = None) -> list[dict[str, Any]]:
    """What monitoring needs of each request (oldest first), from `since` on if given."""
    sql = "SELECT created_at, model, error, latency_ms, feedback FROM production_requests"
    params: list[Any] = []
    if since:
        sql += " WHERE created_at >= ?"
        params.append(since)
    return list(db.query(sql + " ORDER BY created_at, id", params))


def model_rows(db: sqlite_utils.Database, model: str) -> list[dict[str, Any]]:
    """What the drop check needs of every request a model answered as production."""
    return list(
        db.query(
            "SELECT error, latency_ms, feedback FROM production_requests WHERE model = ?",
            [model],
        )
    )


def feedback_rows(
    db: sqlite_utils.Database, since: str | None = None, model: str | None = None
) -> list[dict[str, Any]]:
    """What counting the feedback needs of each request (oldest first): its id, thumbs, error
    and whether it has an answer; from `since` on and of one promoted `model` if given."""
    where, params = _window(since, model)
    sql = "SELECT id, feedback, error, answer != '' AS has_answer FROM production_requests"
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
    return [to_record(ProductionRequest, row, messages=json.loads(row["messages_json"]))
            for row in rows]  # fmt: skip


def _window(since: str | None, model: str | None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if since:
        clauses.append("created_at >= ?")
        params.append(since)
    if model:
        clauses.append("model = ?")
        params.append(model)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
