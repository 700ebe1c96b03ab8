"""Tables of automatic evaluation: `eval_runs`, `eval_examples`, `eval_answers` (the answer
queue claims and writes them through ftapp/store/answers.py; the scores of each answer are
written here, preference accuracy among them) and `eval_judgments`. An example of a preference
version keeps its pair (`pair_json`)."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from ftapp.errors import NotFound
from ftapp.records import Contestant, EvalRun, RunStatus
from ftapp.store.answers import EVAL_ANSWERS_TABLE, insert_items
from ftapp.store.db import to_record, write_transaction
from ftapp.timeutil import utc_now


def insert_run(
    db: sqlite_utils.Database,
    row: dict[str, Any],
    examples: list[tuple[list[dict], str | None]],
    pairs: list[dict[str, Any] | None] | None = None,
) -> int:
    """A run, its examples (messages, reference) with their preference pairs (one per example,
    None where it is not a pair) and one pending answer per example and contestant, all in one
    transaction."""
    contestants = [c["name"] for c in json.loads(row["contestants_json"])]
    with write_transaction(db):
        run_id = db["eval_runs"].insert({**row, "created_at": utc_now()}).last_pk
        insert_items(db, EVAL_ANSWERS_TABLE, run_id, examples, contestants, 1)
        for position, pair in enumerate(pairs or [], 1):
            if pair is not None:
                db.execute(
                    "UPDATE eval_examples SET pair_json = ? WHERE run_id = ? AND position = ?",
                    [json.dumps(pair, ensure_ascii=False), run_id, position],
                )
    return run_id


def get_run(db: sqlite_utils.Database, name_or_id: str | int) -> EvalRun:
    column = "id" if isinstance(name_or_id, int) else "name"
    rows = list(db.query(f"SELECT * FROM eval_runs WHERE {column} = ?", [name_or_id]))
    if not rows:
        raise NotFound(f"no evaluation run {name_or_id!r}; `ftapp eval runs` lists them")
    return _run(rows[0])


def list_runs(db: sqlite_utils.Database) -> list[EvalRun]:
    return [_run(row) for row in db.query("SELECT * FROM eval_runs ORDER BY id DESC")]


def run_name_taken(db: sqlite_utils.Database, name: str) -> bool:
    return db.execute("SELECT 1 FROM eval_runs WHERE name = ?", [name]).fetchone() is not None


def set_run_status(
    db: sqlite_utils.Database, run_id: int, status: RunStatus, error: str | None = None
) -> None:
    finished = status in (RunStatus.DONE, RunStatus.FAILED, RunStatus.CANCELLED)
    db["eval_runs"].update(
        run_id, {"status": status, "error": error, "finished_at": utc_now() if finished else None}
    )


def runs_waiting(db: sqlite_utils.Database) -> list[int]:
    """Runs still to be completed: generating, or scoring (scoring is redone after a crash)."""
    rows = db.execute(
        "SELECT id FROM eval_runs WHERE status IN ('generating', 'scoring') ORDER BY id"
    )
    return [row[0] for row in rows]


def run_examples(db: sqlite_utils.Database, run_id: int) -> list[dict[str, Any]]:
    """A run's examples in order: messages decoded, and `pair` ({"chosen", "rejected"}: the
    turns of each answer) for a preference pair, else None."""
    rows = db.query("SELECT * FROM eval_examples WHERE run_id = ? ORDER BY position", [run_id])
    return [
        {**row, "messages": json.loads(row["messages_json"]),
         "pair": json.loads(row["pair_json"]) if row["pair_json"] else None}
        for row in rows
    ]  # fmt: skip


def run_answers(db: sqlite_utils.Database, run_id: int) -> list[dict[str, Any]]:
    """Every answer of a run with its example's position, scores decoded (None if unscored)."""
    rows = db.query(
        "SELECT a.*, e.position FROM eval_answers a JOIN eval_examples e ON e.id = a.example_id "
        "WHERE a.run_id = ? ORDER BY e.position, a.id",
        [run_id],
    )
    return [
        {
            **row,
            "scores": json.loads(row["scores_json"]) if row["scores_json"] else None,
            "details": json.loads(row["details_json"]) if row["details_json"] else {},
        }
        for row in rows
    ]


def save_scores(
    db: sqlite_utils.Database,
    scores: dict[int, dict[str, float | None]],
    details: dict[int, dict[str, str]],
    tokens: dict[int, int],
) -> None:
    """The scores, check details and token counts of many answers at once."""
    with write_transaction(db):
        for answer_id, values in scores.items():
            db["eval_answers"].update(answer_id, {
                "scores_json": json.dumps(values),
                "details_json": json.dumps(details.get(answer_id) or {}, ensure_ascii=False),
                "n_tokens": tokens.get(answer_id),
            })  # fmt: skip


def replace_judgments(db: sqlite_utils.Database, run_id: int, rows: list[dict[str, Any]]) -> None:
    """The judge's verdicts of a run (a rescored run starts again from none)."""
    now = utc_now()
    with write_transaction(db):
        db.execute("DELETE FROM eval_judgments WHERE run_id = ?", [run_id])
        db["eval_judgments"].insert_all(
            {**row, "run_id": run_id, "created_at": now} for row in rows
        )


def judgments(db: sqlite_utils.Database, run_id: int) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM eval_judgments WHERE run_id = ? ORDER BY id", [run_id]))


def runs_with_model(db: sqlite_utils.Database, model: str) -> list[EvalRun]:
    """The runs in which `model` ("base" or a variant) answered, newest first: how a variant
    links to its evaluations."""
    return [run for run in list_runs(db) if any(c.model == model for c in run.contestants)]


def _run(row: dict[str, Any]) -> EvalRun:
    return to_record(
        EvalRun,
        row,
        contestants=[Contestant(**c) for c in json.loads(row["contestants_json"])],
        sampling=json.loads(row["sampling_json"]),
        checks=json.loads(row["checks_json"]),
        judge=json.loads(row["judge_json"]) if row["judge_json"] else None,
        status=RunStatus(row["status"]),
    )
