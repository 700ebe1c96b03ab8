"""Drift of production traffic: whether what clients send, and what the model answers, moved
since the current model was promoted. The first day after the promotion is the reference;
every later day is compared with it on

- prompt length and answer length (tokens): a two-sample Kolmogorov-Smirnov test (scipy) and
  the population stability index over the reference's deciles;
- the share of empty answers, of errors, of answers cut at their token limit (the stop
  reason) and of refusals ("I'm sorry", "I can't", ... where the text is kept): a
  two-sided Fisher exact test (scipy).

A measure is flagged when its test says p < ALPHA and, for lengths, the PSI is above
PSI_SHIFT too (a large sample makes tiny shifts significant; PSI says whether it matters).
Pure functions over the rows `production_requests` keeps; the Deploy tab and
`ftapp deploy monitor` show them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import sqlite_utils
from scipy.stats import fisher_exact, ks_2samp

from ftapp.deploy.production import STOPPED
from ftapp.store import production as store

ALPHA = 0.01
PSI_SHIFT = 0.2  # the usual "significant shift" mark of the population stability index
MIN_REQUESTS = 30  # on each side; fewer says nothing either way
REFERENCE = timedelta(days=1)
# How a refusal starts, in the models' usual words (checked on kept texts only).
REFUSAL = re.compile(
    r"(i'?m sorry|i am sorry|sorry, (but )?i|i can(not|'t| not)|i won'?t|"
    r"i'?m (not able|unable)|as an ai)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Shift:
    day: str  # "2024-05-04", UTC
    measure: str  # "prompt tokens", "answer tokens", "empty answers", "errors"
    reference: float  # the reference's median (lengths) or share
    value: float  # the day's
    p_value: float
    psi: float | None  # lengths only
    flagged: bool

    @property
    def text(self) -> str:
        kind = "median" if self.psi is not None else "share"
        psi = f", PSI {self.psi:.2f}" if self.psi is not None else ""
        shown = (f"{self.reference:.0f} to {self.value:.0f}" if self.psi is not None
                 else f"{self.reference:.1%} to {self.value:.1%}")  # fmt: skip
        return f"{self.day}: {self.measure} moved ({kind} {shown}; p = {self.p_value:.2g}{psi})"


def production_drift(db: sqlite_utils.Database) -> list[Shift]:
    """The traffic drift of the model in production, since it was promoted."""
    current = store.latest_promotion(db)
    return [] if current is None else traffic_drift(db, current.model, current.created_at)


def drift_text(shifts: list[Shift]) -> str:
    """What moved, for the page and the terminal; one line when nothing did."""
    moved = [s.text for s in shifts if s.flagged]
    if not shifts:
        return ("Traffic drift: not enough requests yet (a day after the promotion as the "
                f"reference, then days of {MIN_REQUESTS} or more).")  # fmt: skip
    if not moved:
        return f"Traffic drift: nothing moved over {len({s.day for s in shifts})} day(s)."
    return "Traffic drift since the promotion:\n" + "\n".join(f"- {line}" for line in moved)


def traffic_drift(db: sqlite_utils.Database, model: str, since: str) -> list[Shift]:
    """Every day's comparison with the first day after `since` (the promotion of `model`),
    for the requests `model` answered."""
    rows = [r for r in store.model_rows(db, model) if r["created_at"] >= since]
    return compare_days(rows, since)


def compare_days(rows: list[dict], since: str) -> list[Shift]:
    """The comparisons, from rows with created_at, prompt_tokens, n_tokens, answer_empty and
    error; days with fewer than MIN_REQUESTS requests are left out."""
    start = datetime.fromisoformat(since)
    reference = [r for r in rows if datetime.fromisoformat(r["created_at"]) < start + REFERENCE]
    later: dict[str, list[dict]] = {}
    for row in rows:
        if datetime.fromisoformat(row["created_at"]) >= start + REFERENCE:
            later.setdefault(row["created_at"][:10], []).append(row)
    if len(reference) < MIN_REQUESTS:
        return []
    shifts = []
    for day, today in sorted(later.items()):
        if len(today) < MIN_REQUESTS:
            continue
        for measure, column in (("prompt tokens", "prompt_tokens"), ("answer tokens", "n_tokens")):
            shift = _length_shift(day, measure, _values(reference, column), _values(today, column))
            if shift is not None:
                shifts.append(shift)
        shifts.append(_share_shift(day, "empty answers", reference, today, _is_empty))
        shifts.append(_share_shift(day, "errors", reference, today, _is_error))
        shifts.append(_share_shift(day, "cut at the token limit", reference, today,
                                   _is_cut))  # fmt: skip
        kept_before = [r for r in reference if r.get("text_kept")]
        kept_now = [r for r in today if r.get("text_kept")]
        if len(kept_before) >= MIN_REQUESTS and len(kept_now) >= MIN_REQUESTS:
            shifts.append(_share_shift(day, "refusals", kept_before, kept_now, _is_refusal))
    return shifts


def _values(rows: list[dict], column: str) -> list[float]:
    return [float(r[column]) for r in rows if r.get(column) is not None]


def _length_shift(day: str, measure: str, before: list[float], now: list[float]) -> Shift | None:
    if len(before) < MIN_REQUESTS or len(now) < MIN_REQUESTS:
        return None
    p_value = float(ks_2samp(before, now).pvalue)
    index = psi(before, now)
    return Shift(day, measure, float(np.median(before)), float(np.median(now)), p_value, index,
                 p_value < ALPHA and index > PSI_SHIFT)  # fmt: skip


def psi(reference: list[float], current: list[float], bins: int = 10) -> float:
    """The population stability index of `current` against `reference`, over the reference's
    quantile bins (shares floored at 0.0001 so an empty bin counts as a large shift, not an
    infinite one)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0 if set(current) <= set(reference) else float("inf")
    edges[0], edges[-1] = -np.inf, np.inf
    expected = np.histogram(reference, edges)[0] / len(reference)
    actual = np.histogram(current, edges)[0] / len(current)
    expected, actual = np.maximum(expected, 1e-4), np.maximum(actual, 1e-4)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _share_shift(day: str, measure: str, before: list[dict], now: list[dict], test) -> Shift:
    k_before, k_now = sum(map(test, before)), sum(map(test, now))
    table = [[k_now, len(now) - k_now], [k_before, len(before) - k_before]]
    p_value = float(fisher_exact(table).pvalue)
    return Shift(day, measure, k_before / len(before), k_now / len(now), p_value, None,
                 p_value < ALPHA)  # fmt: skip


def _is_empty(row: dict) -> bool:
    return row.get("error") is None and not row.get("n_tokens")


def _is_cut(row: dict) -> bool:
    return row.get("finish_reason") == "length"


def _is_refusal(row: dict) -> bool:
    return bool(REFUSAL.match((row.get("answer") or "").strip()))


def _is_error(row: dict) -> bool:
    return row.get("error") is not None and row.get("error") != STOPPED
