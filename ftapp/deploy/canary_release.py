"""Canary releases: a candidate answers a share of production (10% say, chosen by API key or
user, so one client meets one model; deploy/production.in_canary) beside the stable model,
the two compared on the same window, until an admin promotes it fully or rolls it back, or it
rolls itself back when its errors or its thumbs down are significantly worse than the
stable model's on enough requests (FTAPP_CANARY_MIN_REQUESTS, FTAPP_CANARY_ALPHA: a one-sided
Fisher exact test, scipy). Every start and end is kept in `canary_releases`, with who and why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sqlite_utils
from scipy.stats import fisher_exact

from ftapp.deploy.production import STOPPED, promote
from ftapp.errors import Conflict, ValidationError
from ftapp.models.registry import BaseModel
from ftapp.serving.setup import served_model
from ftapp.store import production as store
from ftapp.store.db import write_transaction
from ftapp.store.production import CanaryRelease

ROLLED_BACK_BY_ITSELF = "rolled back by itself"
SYSTEM = "ftapp"


@dataclass(frozen=True)
class Side:
    model: str
    requests: int
    errors: int
    rated: int
    thumbs_down: int
    latency_p50_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def thumbs_up_rate(self) -> float | None:
        return (self.rated - self.thumbs_down) / self.rated if self.rated else None


@dataclass(frozen=True)
class Comparison:
    canary: CanaryRelease
    candidate: Side
    stable: Side
    errors_p: float | None  # one-sided: the candidate fails more often (None: too few)
    thumbs_down_p: float | None  # one-sided: the candidate gets more thumbs down

    def worse(self, alpha: float) -> list[str]:
        """Why the candidate is significantly worse, one reason a line (empty: it isn't)."""
        reasons = []
        if self.errors_p is not None and self.errors_p < alpha:
            reasons.append(f"errors on {self.candidate.errors} of {self.candidate.requests} "
                           f"requests against {self.stable.errors} of {self.stable.requests} "
                           f"(one-sided Fisher exact test, p = {self.errors_p:.2g})")  # fmt: skip
        if self.thumbs_down_p is not None and self.thumbs_down_p < alpha:
            reasons.append(f"thumbs down on {self.candidate.thumbs_down} of "
                           f"{self.candidate.rated} rated against {self.stable.thumbs_down} of "
                           f"{self.stable.rated} (p = {self.thumbs_down_p:.2g})")  # fmt: skip
        return reasons


def parse_share(value: str | float) -> float:
    """A share of traffic as typed: 0.1, or 10 / "10%" for ten percent."""
    text = str(value).strip()
    try:
        share = float(text.rstrip("%"))
    except ValueError:
        raise ValidationError(
            f"share: a fraction (0.1) or a percentage (10%), got {text!r}"
        ) from None
    share = share / 100 if text.endswith("%") or share >= 1 else share
    if not 0 < share < 1:
        raise ValidationError(f"share: more than 0% and less than 100% of traffic, got {text!r}")
    return share


def start_canary(db: sqlite_utils.Database, base: BaseModel, candidate: str, share: float,
                 user: str) -> CanaryRelease:  # fmt: skip
    """`candidate` answers `share` of production from now on, beside what is in production."""
    candidate = (candidate or "").strip()
    if not candidate:
        raise ValidationError("choose a candidate model for the canary")
    share = parse_share(share)
    served_model(db, base, candidate)  # it can answer here, or NotFound / ValidationError
    with write_transaction(db):
        current = store.latest_promotion(db)
        if current is None:
            raise Conflict("nothing is in production yet: promote a model first, then try "
                           "a candidate beside it")  # fmt: skip
        running = store.active_canary(db)
        if running is not None:
            raise Conflict(f"canary {running.candidate!r} is running; promote it or roll it "
                           "back first")  # fmt: skip
        if candidate == current.model:
            raise Conflict(f"{candidate!r} is already in production")
        return store.insert_canary(db, candidate, current.model, share, user)


def compare(db: sqlite_utils.Database, canary: CanaryRelease, min_requests: int) -> Comparison:
    rows = store.canary_rows(db, canary.id)
    candidate = _side(canary.candidate, [r for r in rows if r["model"] == canary.candidate])
    stable = _side(canary.stable, [r for r in rows if r["model"] != canary.candidate])
    errors_p = thumbs_p = None
    if candidate.requests >= min_requests and stable.requests >= min_requests:
        errors_p = _worse(candidate.errors, candidate.requests, stable.errors, stable.requests)
    if candidate.rated >= min_requests and stable.rated >= min_requests:
        thumbs_p = _worse(candidate.thumbs_down, candidate.rated, stable.thumbs_down,
                          stable.rated)  # fmt: skip
    return Comparison(canary, candidate, stable, errors_p, thumbs_p)


def check_canary(db: sqlite_utils.Database, min_requests: int, alpha: float) -> Comparison | None:
    """Roll the running canary back by itself when it is significantly worse; returns its
    comparison when it did."""
    canary = store.active_canary(db)
    if canary is None:
        return None
    comparison = compare(db, canary, min_requests)
    reasons = comparison.worse(alpha)
    if not reasons:
        return None
    store.end_canary(db, canary.id, ROLLED_BACK_BY_ITSELF, SYSTEM, "; ".join(reasons))
    return comparison


def promote_canary(db: sqlite_utils.Database, base: BaseModel, user: str,
                   override_reason: str = "") -> CanaryRelease:  # fmt: skip
    """The running canary's candidate becomes production for everyone (through the gate)."""
    canary = _running(db)
    promote(db, base, canary.candidate, user, f"promoted after canary #{canary.id}",
            override_reason=override_reason)  # fmt: skip
    store.end_canary(db, canary.id, "promoted", user, None)
    return store.get_canary(db, canary.id)


def roll_back_canary(db: sqlite_utils.Database, user: str, reason: str = "") -> CanaryRelease:
    """The running canary stops: the stable model answers everyone again."""
    canary = _running(db)
    store.end_canary(db, canary.id, "rolled back", user, (reason or "").strip() or None)
    return store.get_canary(db, canary.id)


def _running(db: sqlite_utils.Database) -> CanaryRelease:
    canary = store.active_canary(db)
    if canary is None:
        raise Conflict("no canary release is running")
    return canary


def _side(model: str, rows: list[dict]) -> Side:
    finished = [r["latency_ms"] for r in rows if r["error"] is None]
    return Side(
        model=model,
        requests=len(rows),
        errors=sum(1 for r in rows if r["error"] is not None and r["error"] != STOPPED),
        rated=sum(1 for r in rows if r["feedback"] is not None),
        thumbs_down=sum(1 for r in rows if r["feedback"] == -1),
        latency_p50_ms=float(np.median(finished)) if finished else None,
    )


def _worse(k_candidate: int, n_candidate: int, k_stable: int, n_stable: int) -> float:
    table = [[k_candidate, n_candidate - k_candidate], [k_stable, n_stable - k_stable]]
    return float(fisher_exact(table, alternative="greater").pvalue)
