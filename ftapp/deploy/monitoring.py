"""Monitoring of production (the Playground's production chat and the API's calls): per hour or
day and per promoted model (and per API key if asked), how many requests, how many failed, how
fast (median and 95th percentile, the time to the first token), how many were rated and how
many of the ratings were thumbs up; and a flag when the model now in production does worse than
the one promoted before it (fewer thumbs up, with statistical support, or much slower).

The numbers come from `production_requests` (ftapp/store/production.py). A reply the user
stopped is counted apart from the errors, and only finished replies count towards latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import sqlite_utils
from scipy.stats import fisher_exact

from ftapp.deploy.production import STOPPED
from ftapp.errors import ValidationError
from ftapp.store import production as store

Bucket = Literal["hour", "day"]
# How much of an ISO-8601 UTC timestamp ("2024-05-01T10:23:45.678+00:00") names its bucket.
BUCKET_CHARS = {"hour": 13, "day": 10}

# The drop flag. Thumbs: a one-sided Fisher exact test (scipy) of the two thumbs-up rates, only
# with at least MIN_RATED rated replies on each side (fewer says nothing either way).
# Latency: the median of finished replies, with at least MIN_FINISHED on each side.
ALPHA = 0.05
MIN_RATED = 20
MIN_FINISHED = 20
LATENCY_RISE = 1.5  # flagged when the median is more than 50% higher


@dataclass(frozen=True)
class MonitoringRow:
    bucket: str  # "2024-05-01T10:00" (hour) or "2024-05-01" (day), UTC
    model: str  # the promoted model that answered
    requests: int
    errors: int  # failed replies (stopped ones are counted apart)
    stopped: int  # replies the user stopped before the end
    latency_p50_ms: float | None  # over finished replies (numpy's linear interpolation)
    latency_p95_ms: float | None
    rated: int  # replies with a thumbs up or down
    feedback_rate: float  # rated / requests
    thumbs_up_rate: float | None  # thumbs up / rated; None when nothing was rated
    source: str = ""  # split by key: "key NAME" or "playground"; "" when not split
    ttft_p50_ms: float | None = None  # time to the first piece, median over those timed


@dataclass(frozen=True)
class Drop:
    current: str  # the model in production now
    previous: str  # the model promoted before it
    reasons: tuple[str, ...]  # one line each, with the numbers

    @property
    def text(self) -> str:
        return f"{self.current} does worse than {self.previous}: " + "; ".join(self.reasons)


def monitoring_report(
    db: sqlite_utils.Database,
    bucket: Bucket = "hour",
    since: str | None = None,
    by_key: bool = False,
) -> list[MonitoringRow]:
    """One row per time bucket and model that had requests (and per API key, the Playground
    apart, with `by_key`), oldest first (from `since` on, an ISO-8601 date or time, UTC unless
    it says otherwise)."""
    if bucket not in BUCKET_CHARS:
        raise ValidationError(f"bucket must be hour or day, got {bucket!r}")
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in store.request_rows(db, _utc(since) if since else None):
        source = _source(row["key_name"]) if by_key else ""
        key = (_bucket_label(row["created_at"], bucket), row["model"], source)
        groups.setdefault(key, []).append(row)
    return [_summarize(label, model, rows, source)
            for (label, model, source), rows in sorted(groups.items())]  # fmt: skip


def _source(key_name: str | None) -> str:
    return f"key {key_name}" if key_name else "playground"


def feedback_drop(db: sqlite_utils.Database) -> Drop | None:
    """Whether the model in production does worse than the model promoted before it (by the
    history of promotions, a rollback included): None when it doesn't, or when there is not
    enough data to say."""
    history = store.list_promotions(db)
    if len(history) < 2:
        return None
    current, previous = history[-1].model, history[-2].model
    if current == previous:
        return None
    now, before = store.model_rows(db, current), store.model_rows(db, previous)
    reasons = []
    up_now, rated_now = _thumbs(now)
    up_before, rated_before = _thumbs(before)
    if rated_now >= MIN_RATED and rated_before >= MIN_RATED:
        table = [[up_now, rated_now - up_now], [up_before, rated_before - up_before]]
        _, p_value = fisher_exact(table, alternative="less")
        if p_value < ALPHA:
            reasons.append(
                f"thumbs up on {up_now / rated_now:.0%} of {rated_now} rated replies against "
                f"{up_before / rated_before:.0%} of {rated_before} "
                f"(one-sided Fisher exact test, p = {p_value:.3g})"
            )
    latency_now, latency_before = _finished_latencies(now), _finished_latencies(before)
    if len(latency_now) >= MIN_FINISHED and len(latency_before) >= MIN_FINISHED:
        median_now, median_before = np.median(latency_now), np.median(latency_before)
        if median_now > LATENCY_RISE * median_before:
            reasons.append(
                f"median latency {median_now:.0f} ms against {median_before:.0f} ms "
                f"(+{median_now / median_before - 1:.0%}, over {len(latency_now)} and "
                f"{len(latency_before)} finished replies)"
            )
    return Drop(current, previous, tuple(reasons)) if reasons else None


def _summarize(label: str, model: str, rows: list[dict], source: str = "") -> MonitoringRow:
    latencies = _finished_latencies(rows)
    ttfts = [r["ttft_ms"] for r in rows if r.get("ttft_ms") is not None]
    ups, rated = _thumbs(rows)
    p50, p95 = np.percentile(latencies, [50, 95]) if latencies else (None, None)
    return MonitoringRow(
        bucket=label,
        model=model,
        requests=len(rows),
        errors=sum(1 for r in rows if r["error"] is not None and r["error"] != STOPPED),
        stopped=sum(1 for r in rows if r["error"] == STOPPED),
        latency_p50_ms=_ms(p50),
        latency_p95_ms=_ms(p95),
        rated=rated,
        feedback_rate=rated / len(rows),
        thumbs_up_rate=ups / rated if rated else None,
        source=source,
        ttft_p50_ms=_ms(np.percentile(ttfts, 50)) if ttfts else None,
    )


def _ms(value: float | None) -> float | None:
    """A percentile to a tenth of a millisecond (interpolation leaves float noise)."""
    return None if value is None else round(float(value), 1)


def _finished_latencies(rows: list[dict]) -> list[int]:
    return [r["latency_ms"] for r in rows if r["error"] is None]


def _thumbs(rows: list[dict]) -> tuple[int, int]:
    """(thumbs up, rated) of some requests."""
    rated = [r["feedback"] for r in rows if r["feedback"] is not None]
    return sum(1 for value in rated if value == 1), len(rated)


def _bucket_label(created_at: str, bucket: Bucket) -> str:
    prefix = created_at[: BUCKET_CHARS[bucket]]
    return prefix + ":00" if bucket == "hour" else prefix


def _utc(text: str) -> str:
    """`text` as the stored timestamp format, so that comparing strings compares times."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(
            f"since must be an ISO-8601 date or time like 2024-05-01 or 2024-05-01T10:00, "
            f"got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")
