"""Drift of production traffic on seeded synthetic days: answers that grow longer after day 3
are flagged on day 4 (and only that), stable traffic is not, a day of errors is; the PSI
against a hand computation; the same through the database."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from ftapp.deploy.traffic_drift import compare_days, psi, traffic_drift

START = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def day_of_traffic(rng, day: int, answer_mean: float, n: int = 80, errors: int = 0,
                   refusals: int = 0) -> list:  # fmt: skip
    rows = []
    for i in range(n):
        at = START + timedelta(days=day, minutes=10 * i)
        answer = "I'm sorry, I can't help with that." if i < refusals else "Sure: here it is."
        rows.append({"created_at": at.isoformat(timespec="milliseconds"),
                     "prompt_tokens": int(rng.normal(40, 6)),
                     "n_tokens": max(1, int(rng.normal(answer_mean, 12))),
                     "error": "vLLM is not answering" if i < errors else None,
                     "finish_reason": "stop", "answer": answer, "text_kept": 1})  # fmt: skip
    return rows


def flagged(shifts) -> list[tuple[str, str]]:
    return [(s.day, s.measure) for s in shifts if s.flagged]


def test_longer_answers_from_day_4_are_flagged_on_day_4_only():
    rng = np.random.default_rng(7)
    rows = [r for day in range(4) for r in day_of_traffic(rng, day, 100)]
    rows += day_of_traffic(rng, 4, 150)
    shifts = compare_days(rows, START.isoformat())
    assert flagged(shifts) == [("2024-05-05", "answer tokens")]
    (moved,) = [s for s in shifts if s.flagged]
    assert 95 < moved.reference < 105 and 145 < moved.value < 155 and moved.psi > 1
    assert "answer tokens moved (median" in moved.text
    assert {s.day for s in shifts} == {"2024-05-02", "2024-05-03", "2024-05-04", "2024-05-05"}


def test_stable_traffic_is_not_flagged_and_a_day_of_errors_is():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        rows = [r for day in range(6) for r in day_of_traffic(rng, day, 100)]
        assert flagged(compare_days(rows, START.isoformat())) == [], seed
    rng = np.random.default_rng(0)
    rows = [r for day in range(2) for r in day_of_traffic(rng, day, 100)]
    rows += day_of_traffic(rng, 2, 100, errors=20)
    assert flagged(compare_days(rows, START.isoformat())) == [("2024-05-03", "errors")]


def test_more_refusals_and_more_cut_answers_are_flagged():
    rng = np.random.default_rng(2)
    rows = [r for day in range(2) for r in day_of_traffic(rng, day, 100)]
    rows += day_of_traffic(rng, 2, 100, refusals=25)
    cut = day_of_traffic(rng, 3, 100)
    for row in cut[:30]:
        row["finish_reason"] = "length"
    shifts = compare_days(rows + cut, START.isoformat())
    assert flagged(shifts) == [("2024-05-03", "refusals"), ("2024-05-04", "cut at the token limit")]
    hidden = [{**r, "answer": "", "text_kept": 0} for r in rows]  # no text: refusals unknown
    assert "refusals" not in {s.measure for s in compare_days(hidden, START.isoformat())}


def test_too_little_traffic_says_nothing():
    rng = np.random.default_rng(1)
    rows = day_of_traffic(rng, 0, 100, n=10) + day_of_traffic(rng, 1, 300, n=80)
    assert compare_days(rows, START.isoformat()) == []


def test_psi_by_hand():
    reference = list(range(100))  # deciles 0-9, 10-19, ...
    current = [5] * 50 + [95] * 50  # half in the first decile, half in the last
    expected = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert psi(reference, current) == pytest.approx(expected, rel=1e-6)
    assert psi(reference, reference) == 0.0


def test_through_the_database(db):
    rng = np.random.default_rng(3)
    rows = [r for day in range(3) for r in day_of_traffic(rng, day, 100)]
    rows += day_of_traffic(rng, 3, 160)
    db["production_requests"].insert_all(
        {**r, "model": "support-v2", "messages_json": "[]", "answer": "", "latency_ms": 100,
         "created_by": "key:svc"} for r in rows
    )  # fmt: skip
    shifts = traffic_drift(db, "support-v2", START.isoformat())
    assert flagged(shifts) == [("2024-05-04", "answer tokens")]
    assert traffic_drift(db, "other", START.isoformat()) == []
