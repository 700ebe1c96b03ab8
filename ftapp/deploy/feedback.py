"""From production feedback to preference data: the thumbs up and down users gave the replies
of the production chat become unpaired good/bad rows (TRL's KTO format) in a new preference
dataset, by a rule stated once here and counted for the admin before anything is written.

The rule, request by request (every production request, or those from `since` on, or those
one promoted `model` answered):
- a reply that failed, was stopped or is empty gives nothing, rated or not ("failed");
- a finished reply without a rating gives nothing ("not rated");
- a thumbs up gives one row, the reply labelled good ("thumbs up"); a thumbs down one row
  labelled bad ("thumbs down").
A row's prompt is the conversation the production model was sent, its completion the reply;
it keeps the production request it came from as `request_id` (kept with the row as read,
`Example.raw`). Two requests with the same conversation, reply and rating are one row (the
importer drops exact copies).

`feedback_to_dataset` writes them as a new dataset version in one step, the way the Arena's
votes are (ftapp/data/from_rows.py): imported and checked like an uploaded file, accepted,
split and frozen as v1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlite_utils

from ftapp.data.from_rows import dataset_from_rows
from ftapp.data.importer import TokenCounter
from ftapp.deploy.monitoring import _utc as utc_timestamp
from ftapp.errors import Conflict, ValidationError
from ftapp.records import DatasetVersion
from ftapp.store import datasets as dataset_store
from ftapp.store import production as store

# What a request counts as, in the order the page lists them.
RULES = ("thumbs up", "thumbs down", "not rated", "failed", "text not kept")
RULE_NOTE = (
    "Each rated reply of the production chat is one unpaired row (KTO): a thumbs up labelled "
    "good, a thumbs down labelled bad; unrated replies and failed or stopped ones give nothing, "
    "nor do API calls whose text was not kept (FTAPP_API_LOG_TEXTS) or was erased after "
    "FTAPP_LOG_RETENTION_DAYS. Each row keeps its production request's id (request_id)."
)


@dataclass(frozen=True)
class RatedReply:
    """An unpaired row for KTO: the production model's reply to a conversation, good or bad."""

    request_id: int
    prompt: list[dict[str, str]]
    answer: list[dict[str, str]]
    is_good: bool


@dataclass(frozen=True)
class RepliesFromFeedback:
    replies: list[RatedReply]
    counts: dict[str, int]  # requests per rule; every rule listed, zeros too


def feedback_counts(
    db: sqlite_utils.Database, *, since: str | None = None, model: str | None = None
) -> dict[str, int]:
    """The production requests per rule (see the module docstring), before anything is
    written; `since` an ISO-8601 date or time (UTC unless it says otherwise)."""
    counts = dict.fromkeys(RULES, 0)
    for row in store.feedback_rows(db, _since(since), _model(model)):
        counts[_rule(row["feedback"], row["error"], bool(row["has_answer"]),
                     bool(row["text_kept"]))] += 1  # fmt: skip
    return counts


def counts_text(counts: dict[str, int]) -> str:
    """The requests per rule, for the page and the terminal."""
    shown = ", ".join(f"{rule}: {counts.get(rule, 0)}" for rule in RULES)
    return f"production requests: {shown}"


def replies_from_feedback(
    db: sqlite_utils.Database, *, since: str | None = None, model: str | None = None
) -> RepliesFromFeedback:
    """The rows the feedback gives, and the counts per rule, in the same window."""
    counts = feedback_counts(db, since=since, model=model)
    replies = []
    for request in store.rated_requests(db, _since(since), _model(model)):
        if _rule(request.feedback, request.error, bool(request.answer),
                 request.text_kept) in ("failed", "text not kept"):  # fmt: skip
            continue
        answer = [{"role": "assistant", "content": request.answer}]
        replies.append(RatedReply(request.id, request.messages, answer, request.feedback == 1))
    return RepliesFromFeedback(replies, counts)


def feedback_to_dataset(
    db: sqlite_utils.Database,
    dataset: str,
    *,
    since: str | None = None,
    model: str | None = None,
    user: str,
    count_tokens: TokenCounter,
    max_tokens: int,
    ratios: Sequence[float | str] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[DatasetVersion, RepliesFromFeedback]:
    """A new preference dataset from the rated production replies (all, or from `since` on,
    or one promoted `model`'s), accepted, split and frozen as v1; its description states the
    rule and the counts. Refused, with nothing written, when the name is taken or no reply in
    the window is rated; nothing is left behind when a later step fails."""
    name = dataset_store.check_dataset_name(dataset)
    if dataset_store.find_dataset(db, name):
        raise Conflict(f"a dataset named {name!r} exists; feedback goes into a new dataset")
    found = replies_from_feedback(db, since=since, model=model)
    where = _where(since, model)
    if not found.replies:
        raise ValidationError(
            f"no rated production reply in {where} yet ({counts_text(found.counts)})"
        )
    rows = [{"prompt": r.prompt, "completion": r.answer, "label": r.is_good,
             "request_id": r.request_id} for r in found.replies]  # fmt: skip
    version = dataset_from_rows(
        db, name, {"production-feedback.jsonl": rows},
        description=(f"Thumbs up and down on production replies ({where}). {RULE_NOTE} "
                     f"{counts_text(found.counts)}."),
        user=user, count_tokens=count_tokens, max_tokens=max_tokens, ratios=ratios, seed=seed,
        note=f"from production feedback ({where})",
    )  # fmt: skip
    return version, found


def _rule(feedback: int | None, error: str | None, has_answer: bool, text_kept: bool) -> str:
    if not text_kept:
        return "text not kept"
    if error is not None or not has_answer:
        return "failed"
    if feedback is None:
        return "not rated"
    return "thumbs up" if feedback == 1 else "thumbs down"


def _since(since: str | None) -> str | None:
    return utc_timestamp(since) if since and since.strip() else None


def _model(model: str | None) -> str | None:
    return (model or "").strip() or None


def _where(since: str | None, model: str | None) -> str:
    """The window in words, for the description, the note and refusals."""
    parts = []
    if _model(model):
        parts.append(f"model {_model(model)!r}")
    if since and _since(since):
        parts.append(f"since {since.strip()}")
    return ", ".join(parts) or "all requests"
