"""Monitoring of the production chat on a real database: production requests written with
known times, latencies, errors and ratings give the report's counts, percentiles and rates
computed by hand; the drop flag fires on a clear fall in thumbs up or a slower median, and stays
quiet on small or noisy samples."""

from __future__ import annotations

import re

import pytest

from ftapp.deploy.monitoring import MIN_RATED, MonitoringRow, feedback_drop, monitoring_report
from ftapp.deploy.production import STOPPED
from ftapp.errors import ValidationError
from ftapp.store import production as store


def log_request(db, model: str, at: str, latency_ms: int = 100, error: str | None = None,
                feedback: int | None = None) -> None:  # fmt: skip
    db["production_requests"].insert(
        {
            "model": model,
            "messages_json": "[]",
            "answer": "",
            "error": error,
            "latency_ms": latency_ms,
            "feedback": feedback,
            "created_at": at,
            "created_by": "ana",
        }  # fmt: skip
    )


def at(hour: int, minute: int) -> str:
    return f"2024-05-01T{hour:02d}:{minute:02d}:00.000+00:00"


@pytest.fixture
def traffic(db):
    """10:00-10:59: model a, 4 finished replies (100-400 ms; rated up, up, down), a failure and
    a stopped reply (their latencies must not count); model b, one reply of 1000 ms.
    11:00-11:19: model a, 20 finished replies of 10, 20 ... 200 ms, the first 4 rated down."""
    for i, latency in enumerate([100, 200, 300, 400]):
        log_request(db, "a", at(10, i), latency, feedback=[1, 1, -1, None][i])
    log_request(db, "a", at(10, 10), 50, error="vLLM is not ready")
    log_request(db, "a", at(10, 11), 5000, error=STOPPED)
    log_request(db, "b", at(10, 30), 1000)
    for i in range(20):
        log_request(db, "a", at(11, i), 10 * (i + 1), feedback=-1 if i < 4 else None)
    return db


def test_the_hourly_report_matches_hand_computed_numbers(traffic):
    report = monitoring_report(traffic, "hour")
    assert report == [
        # p50 of 100..400 is 250; p95 at position 0.95 * 3 = 2.85: 300 + 0.85 * 100.
        MonitoringRow("2024-05-01T10:00", "a", requests=6, errors=1, stopped=1,
                      latency_p50_ms=250.0, latency_p95_ms=385.0, rated=3,
                      feedback_rate=0.5, thumbs_up_rate=2 / 3),
        MonitoringRow("2024-05-01T10:00", "b", 1, 0, 0, 1000.0, 1000.0, 0, 0.0, None),
        # p50 of 10..200 is 105; p95 at 0.95 * 19 = 18.05: 190 + 0.05 * 10.
        MonitoringRow("2024-05-01T11:00", "a", 20, 0, 0, 105.0, 190.5, 4, 0.2, 0.0),
    ]  # fmt: skip


def test_the_daily_report_pools_the_hours(traffic):
    # Model a's 24 finished latencies sorted: 10..100, 100, 110..200, 200, 300, 400.
    # p50 at 11.5: (110 + 120) / 2; p95 at 21.85: 200 + 0.85 * 100.
    assert monitoring_report(traffic, "day") == [
        MonitoringRow("2024-05-01", "a", 26, 1, 1, 115.0, 285.0, 7, 7 / 26, 2 / 7),
        MonitoringRow("2024-05-01", "b", 1, 0, 0, 1000.0, 1000.0, 0, 0.0, None),
    ]  # fmt: skip


def test_since_keeps_later_requests_in_any_time_zone(traffic):
    # 12:10 at UTC+1 is 11:10 UTC: the ten replies from 11:10 on (110..200 ms).
    (row,) = monitoring_report(traffic, "hour", since="2024-05-01T12:10+01:00")
    assert (row.bucket, row.model, row.requests, row.latency_p50_ms) == (
        "2024-05-01T11:00", "a", 10, 155.0)  # fmt: skip
    assert monitoring_report(traffic, "day", since="2024-05-02") == []
    with pytest.raises(ValidationError, match="since must be an ISO-8601 date"):
        monitoring_report(traffic, "hour", since="yesterday")
    with pytest.raises(ValidationError, match="bucket must be hour or day"):
        monitoring_report(traffic, "week")


# --- the drop flag -------------------------------------------------------------------------------


def promote_in_order(db, *models: str) -> None:
    for i, model in enumerate(models):
        store.insert_promotion(db, model, is_rollback=i > 0 and model in models[:i], note="",
                               user="ana")  # fmt: skip


def rated(db, model: str, ups: int, downs: int, latency_ms: int = 100) -> None:
    for i in range(ups + downs):
        log_request(db, model, at(9, i % 60), latency_ms, feedback=1 if i < ups else -1)


def test_a_clear_fall_in_thumbs_up_is_flagged_with_its_numbers(db):
    promote_in_order(db, "v1", "v2")
    rated(db, "v1", 30, 10)
    rated(db, "v2", 10, 30)
    drop = feedback_drop(db)
    assert (drop.current, drop.previous, len(drop.reasons)) == ("v2", "v1", 1)
    assert "thumbs up on 25% of 40 rated replies against 75% of 40" in drop.text
    p_value = float(re.search(r"p = ([0-9.e-]+)", drop.text).group(1))
    assert p_value < 1e-4
    assert drop.text.startswith("v2 does worse than v1: ")


def test_small_or_noisy_samples_are_not_flagged(db):
    promote_in_order(db, "v1", "v2")
    rated(db, "v1", 5, 0)
    rated(db, "v2", 0, 5)  # all down, but only 5 ratings each
    assert MIN_RATED > 5 and feedback_drop(db) is None
    rated(db, "v1", 7, 8)
    rated(db, "v2", 9, 6)  # 20 ratings each now: 60% against 45%, well within chance
    assert feedback_drop(db) is None


def test_a_much_slower_median_is_flagged_and_a_modest_rise_is_not(db):
    promote_in_order(db, "v1", "v2")
    for _ in range(20):
        log_request(db, "v1", at(8, 0), 1000)
        log_request(db, "v2", at(9, 0), 1400)  # +40%
        log_request(db, "v2", at(9, 1), 30_000, error=STOPPED)  # stopped: not counted
    assert feedback_drop(db) is None
    for _ in range(21):
        log_request(db, "v2", at(9, 2), 1700)  # the median is 1700 now: +70%
    drop = feedback_drop(db)
    assert drop.reasons == (
        "median latency 1700 ms against 1000 ms (+70%, over 41 and 20 finished replies)",
    )


def test_after_a_rollback_the_model_rolled_back_to_is_compared_with_the_one_it_replaced(db):
    assert feedback_drop(db) is None  # nothing promoted
    store.insert_promotion(db, "v1", is_rollback=False, note="", user="ana")
    assert feedback_drop(db) is None  # nothing to compare with
    store.insert_promotion(db, "v2", is_rollback=False, note="", user="ana")
    store.insert_promotion(db, "v1", is_rollback=True, note="rolled back from v2", user="ana")
    rated(db, "v1", 5, 35)
    rated(db, "v2", 35, 5)
    drop = feedback_drop(db)
    assert (drop.current, drop.previous) == ("v1", "v2")


def test_per_key_rows_split_the_api_from_the_playground(db):
    for i, (key, ttft) in enumerate([("svc", 40), ("svc", 60), (None, 90), ("etl", 10)]):
        log_request(db, "a", at(10, i), 100 + i)
        db.execute("UPDATE production_requests SET key_name = ?, ttft_ms = ? WHERE id = ?",
                   [key, ttft, i + 1])  # fmt: skip
    (together,) = monitoring_report(db, "hour")
    assert together.requests == 4 and together.source == "" and together.ttft_p50_ms == 50.0
    split = monitoring_report(db, "hour", by_key=True)
    assert [(r.source, r.requests, r.ttft_p50_ms) for r in split] == [
        ("key etl", 1, 10.0), ("key svc", 2, 50.0), ("playground", 1, 90.0)]  # fmt: skip
