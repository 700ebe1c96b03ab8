"""What the production log keeps: an API call's prompt and answer only when the setting
allows (off by default, on in the demo), and no text past the retention days, while every
call's numbers stay for monitoring. A real SQLite file and the echo backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ftapp.deploy.feedback import feedback_counts
from ftapp.deploy.production import erase_old_texts, promote, stream_production_chat
from ftapp.errors import ValidationError
from ftapp.serving.backend import Sampling
from ftapp.settings import Settings, load_settings
from ftapp.store import production as store

ASK = [{"role": "user", "content": "my account number is 12345"}]


def _chat(services, keep_text: bool) -> int:
    reply = stream_production_chat(services.db, services.backend, services.served_base, ASK,
                                   Sampling(max_new_tokens=8), "key:svc", key_name="svc",
                                   keep_text=keep_text)  # fmt: skip
    assert "".join(reply.pieces)
    return reply.request_id


def test_an_api_call_without_text_keeps_its_numbers_only(stand_in):
    with stand_in.db() as db:
        promote(db, stand_in.served_base, "base", "alice")
    kept, private = _chat(stand_in, True), _chat(stand_in, False)
    with stand_in.db() as db:
        shown, hidden = store.get_request(db, kept), store.get_request(db, private)
        store.set_feedback(db, private, 1)
        counts = feedback_counts(db)
    assert shown.text_kept and "12345" in shown.messages[0]["content"] and shown.answer
    assert not hidden.text_kept and hidden.messages == [] and hidden.answer == ""
    assert hidden.latency_ms >= 0 and hidden.n_tokens and hidden.error is None
    assert hidden.key_name == "svc" and hidden.ttft_ms is not None
    assert counts["text not kept"] == 1  # rated, but nothing to train on


def test_texts_older_than_the_retention_are_erased(stand_in):
    with stand_in.db() as db:
        promote(db, stand_in.served_base, "base", "alice")
    old, new = _chat(stand_in, True), _chat(stand_in, True)
    past = (datetime.now(UTC) - timedelta(days=40)).isoformat(timespec="milliseconds")
    with stand_in.db() as db:
        db.execute("UPDATE production_requests SET created_at = ? WHERE id = ?", [past, old])
        assert erase_old_texts(db, 0) == 0  # 0 keeps everything
        assert erase_old_texts(db, 30) == 1
        assert erase_old_texts(db, 30) == 0
        erased, kept = store.get_request(db, old), store.get_request(db, new)
    assert erased.messages == [] and erased.answer == "" and not erased.text_kept
    assert erased.latency_ms == kept.latency_ms or erased.n_tokens  # the numbers stay
    assert kept.text_kept and kept.answer


def test_the_settings_keep_no_api_text_unless_asked(tmp_path):
    assert not Settings(home=tmp_path).api_log_texts
    env = {"FTAPP_HOME": str(tmp_path)}
    assert not load_settings({**env}).api_log_texts
    assert load_settings({**env, "FTAPP_DEMO": "1"}).api_log_texts
    assert not load_settings({**env, "FTAPP_DEMO": "1", "FTAPP_API_LOG_TEXTS": "0"}).api_log_texts
    assert load_settings({**env, "FTAPP_API_LOG_TEXTS": "1"}).log_retention_days == 30
    with pytest.raises(ValidationError, match="FTAPP_LOG_RETENTION_DAYS"):
        load_settings({**env, "FTAPP_LOG_RETENTION_DAYS": "-1"})
