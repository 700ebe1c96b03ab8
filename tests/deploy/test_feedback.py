"""Production feedback to a KTO dataset on a real database: production requests rated up, down,
not at all, or failed give the right rows, labels and links back to their requests, counted
before anything is written; refusals write nothing; the real production chat's thumbs go the
whole way; and `ftapp deploy feedback-to-dataset` in a real subprocess."""

from __future__ import annotations

import json
from contextlib import closing

import pytest

from ftapp.deploy.feedback import (
    RULE_NOTE,
    counts_text,
    feedback_counts,
    feedback_to_dataset,
)
from ftapp.deploy.production import STOPPED, promote, set_feedback, stream_production_chat
from ftapp.errors import Conflict, ValidationError
from ftapp.names import BASE
from ftapp.records import DatasetKind
from ftapp.serving.backend import Sampling
from ftapp.serving.echo import EchoBackend
from ftapp.settings import Settings
from ftapp.store import datasets as dataset_store
from ftapp.store import production as store
from ftapp.store import versions as version_store
from ftapp.store.db import open_db
from ftapp.store.production import UNFINISHED
from tests.helpers import table_counts
from tests.test_cli import ftapp


def log_request(db, question: str, answer: str, feedback: int | None, *, model: str = "v1",
                error: str | None = None, day: int = 1) -> int:  # fmt: skip
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]
    return (
        db["production_requests"]
        .insert(
            {
                "model": model,
                "messages_json": json.dumps(messages),
                "answer": answer,
                "error": error,
                "latency_ms": 100,
                "feedback": feedback,
                "created_at": f"2024-05-{day:02d}T10:00:00.000+00:00",
                "created_by": "ana",
            }  # fmt: skip
        )
        .last_pk
    )


@pytest.fixture
def rated(db):
    """Requests: two thumbs up and one down (v1), one unrated, a failed one rated down, a
    stopped one rated up, an unfinished one; and v2's thumbs up of May 3."""
    ids = {
        "up": log_request(db, "Capital of France?", "Paris.", 1),
        "down": log_request(db, "Two plus two?", "Five.", -1),
        "up2": log_request(db, "Color of the sky?", "Blue.", 1, day=2),
        "none": log_request(db, "Hello?", "Hi.", None),
        "failed": log_request(db, "Boom?", "", -1, error="vLLM is not ready"),
        "stopped": log_request(db, "Long story?", "Once upon", 1, error=STOPPED),
        "unfinished": log_request(db, "Anyone?", "", None, error=UNFINISHED),
        "v2": log_request(db, "Capital of Spain?", "Madrid.", 1, model="v2", day=3),
    }
    return db, ids


def test_the_counts_say_what_each_request_gives(rated):
    db, _ = rated
    counts = feedback_counts(db)
    assert counts == {
        "thumbs up": 3,
        "thumbs down": 1,
        "not rated": 1,
        "failed": 3,
        "text not kept": 0,
    }
    assert counts_text(counts) == (
        "production requests: thumbs up: 3, thumbs down: 1, not rated: 1, failed: 3, "
        "text not kept: 0"
    )
    assert feedback_counts(db, model="v2") == {"thumbs up": 1, "thumbs down": 0, "not rated": 0,
                                               "failed": 0, "text not kept": 0}  # fmt: skip
    # A date is midnight UTC; a time with an offset is converted to UTC (May 2 10:00 UTC on).
    assert feedback_counts(db, since="2024-05-02")["thumbs up"] == 2
    assert feedback_counts(db, since="2024-05-02T12:00+02:00", model="v1")["thumbs up"] == 1
    assert feedback_counts(db, since="2024-05-02T12:01+02:00", model="v1")["thumbs up"] == 0
    with pytest.raises(ValidationError, match="since must be an ISO-8601 date"):
        feedback_counts(db, since="yesterday")
    assert db["datasets"].count == 0  # counting writes nothing


def test_each_rated_reply_becomes_one_kto_row_linked_to_its_request(rated, count_tokens):
    db, ids = rated
    version, found = feedback_to_dataset(db, "feedback", model="v1", user="admin",
                                         count_tokens=count_tokens, max_tokens=512,
                                         ratios=(1, 0, 0))  # fmt: skip
    assert version.label == "feedback@v1" and version.n_examples == 3
    assert found.counts == {
        "thumbs up": 2,
        "thumbs down": 1,
        "not rated": 1,
        "failed": 3,
        "text not kept": 0,
    }
    dataset = dataset_store.get_dataset(db, "feedback")
    assert dataset.kind == DatasetKind.PREFERENCE
    assert dataset.description == (
        f"Thumbs up and down on production replies (model 'v1'). {RULE_NOTE} "
        "production requests: thumbs up: 2, thumbs down: 1, not rated: 1, failed: 3, "
        "text not kept: 0."
    )
    examples = list(db["examples"].rows)
    linked = {json.loads(e["raw_json"])["request_id"]: e for e in examples}
    assert set(linked) == {ids["up"], ids["down"], ids["up2"]}
    assert {i: e["label"] for i, e in linked.items()} == {ids["up"]: 1, ids["down"]: 0,
                                                          ids["up2"]: 1}  # fmt: skip
    assert {e["status"] for e in examples} == {"accepted"}
    frozen = {r["messages"][-1]["content"]: r for r in version_store.version_rows(db, version.id)}
    assert set(frozen) == {"Paris.", "Five.", "Blue."}
    five = frozen["Five."]
    assert five["label"] is False and five["rejected"] is None and five["split"] == "train"
    assert five["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Two plus two?"},
        {"role": "assistant", "content": "Five."},
    ]
    (imported,) = dataset_store.list_imports(db, dataset.id)
    assert imported["file_name"] == "production-feedback.jsonl"
    assert imported["source_format"] == "kto"


def test_refusals_write_nothing(rated, count_tokens):
    db, _ = rated
    before = table_counts(db)
    kwargs = {"user": "admin", "count_tokens": count_tokens, "max_tokens": 512}
    with pytest.raises(ValidationError, match=r"no rated production reply in model 'v3' yet "
                                              r"\(production requests: thumbs up: 0"):  # fmt: skip
        feedback_to_dataset(db, "nothing", model="v3", **kwargs)
    with pytest.raises(ValidationError, match="no rated production reply in since 2024-06-01"):
        feedback_to_dataset(db, "nothing", since="2024-06-01", **kwargs)
    with pytest.raises(ValidationError, match="ratios must be numbers"):
        feedback_to_dataset(db, "bad-ratios", ratios=("a", "b", "c"), **kwargs)
    assert table_counts(db) == before
    feedback_to_dataset(db, "taken", **kwargs)
    after = table_counts(db)
    with pytest.raises(Conflict, match="a dataset named 'taken' exists"):
        feedback_to_dataset(db, "taken", **kwargs)
    assert table_counts(db) == after


def test_the_production_chats_thumbs_go_the_whole_way(services, count_tokens):
    question = [{"role": "user", "content": "What is a tangerine?"}]
    with services.db() as db:
        promote(db, services.served_base, BASE, "ana")
    replies = []
    for _ in range(2):
        reply = stream_production_chat(services.db, EchoBackend(), services.served_base,
                                       question, Sampling(), "ana")  # fmt: skip
        replies.append((reply.request_id, "".join(reply.pieces)))
    with services.db() as db:
        set_feedback(db, replies[0][0], "ana", -1)
        version, found = feedback_to_dataset(db, "prod", user="admin", count_tokens=count_tokens,
                                             max_tokens=512, ratios=(1, 0, 0))  # fmt: skip
        assert found.counts["thumbs down"] == 1 and found.counts["not rated"] == 1
        (row,) = version_store.version_rows(db, version.id)
        assert row["messages"] == question + [{"role": "assistant", "content": replies[0][1]}]
        assert row["label"] is False
        (example,) = db["examples"].rows
        assert json.loads(example["raw_json"])["request_id"] == replies[0][0]


def test_feedback_to_a_dataset_from_a_terminal(home, env):
    with closing(open_db(Settings(home=home).db_path)) as db:
        log_request(db, "Capital of France?", "Paris.", 1)
        log_request(db, "Two plus two?", "Five.", -1, model="v2")
        log_request(db, "Hello?", "Hi.", None)
        assert store.feedback_rows(db)  # the rows are there for the subprocess
    counted = ftapp(env, "deploy", "feedback-to-dataset", "x", "--dry-run", "--json")
    assert json.loads(counted.stdout) == {"thumbs up": 1, "thumbs down": 1, "not rated": 1,
                                          "failed": 0, "text not kept": 0}  # fmt: skip
    assert ftapp(env, "data", "list").stdout.strip() == "no datasets yet"  # a dry run writes none
    made = json.loads(ftapp(env, "deploy", "feedback-to-dataset", "thumbs", "--model", "v1",
                            "--ratios", "1,0,0", "--json").stdout)  # fmt: skip
    assert made == {
        "version": "thumbs@v1",
        "rows": 1,
        "good": 1,
        "bad": 0,
        "counts": {
            "thumbs up": 1,
            "thumbs down": 0,
            "not rated": 1,
            "failed": 0,
            "text not kept": 0,
        },
    }
    text = ftapp(env, "deploy", "feedback-to-dataset", "all", "--since", "2024-05-01").stdout
    assert "froze all@v1: 2 rows (1 replies labelled good, 1 bad)" in text
    assert text.startswith("production requests: thumbs up: 1, thumbs down: 1")
    refused = ftapp(env, "deploy", "feedback-to-dataset", "thumbs", check=False)
    assert refused.returncode == 2 and "exists" in refused.stderr
    empty = ftapp(env, "deploy", "feedback-to-dataset", "none", "--model", "v9", check=False)
    assert empty.returncode == 2 and "no rated production reply in model 'v9'" in empty.stderr
    assert "none" not in ftapp(env, "data", "list").stdout
