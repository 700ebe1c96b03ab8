"""Each reviewer's judging, checked: accuracy on check battles (gold.py), agreement with the
crowd on the battles others judged too, position bias (how often they pick the left side),
time per vote, and flags on patterns that mean a reviewer clicks without reading (always the
same button, votes faster than the answers could be read, checks mostly wrong, a crowd they
rarely agree with). Shown to admins only; a session can drop the votes of reviewers below an
accuracy from its ratings (`trusted`).

Pure functions over `VoteRecord`s; the store gathers them (store.arena.vote_records).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from scipy.stats import binomtest

READ_WORDS_PER_SECOND = 8.0  # a fast skim (480 words a minute): anything quicker is no reading
MIN_VOTES_TO_FLAG = 10
MIN_CHECKS_TO_FLAG = 5
SAME_BUTTON_SHARE = 0.9
TOO_FAST_SHARE = 0.5
LOW_ACCURACY = 0.7  # flagged when the 95% interval's top is below it


@dataclass(frozen=True)
class VoteRecord:
    battle_id: int
    reviewer: str
    choice: str  # a, b, tie, both_bad
    gold: str | None  # the better side of a check battle, else None
    seconds: float | None  # from the battle being handed out to the vote; None if unknown
    words: int  # words in both answers: what there was to read


@dataclass(frozen=True)
class Share:
    """k of n, as a proportion with its exact (Clopper-Pearson) 95% interval."""

    k: int
    n: int
    low: float | None
    high: float | None

    @property
    def rate(self) -> float | None:
        return self.k / self.n if self.n else None


@dataclass(frozen=True)
class ReviewerQuality:
    reviewer: str
    n_votes: int
    accuracy: Share  # right on check battles
    agreement: Share  # the same as the others' majority, where there is one
    left: Share  # decisive votes for the left side (a)
    median_seconds: float | None
    too_fast: Share  # timed votes quicker than the answers could be read
    flags: tuple[str, ...]


def share(k: int, n: int) -> Share:
    if not n:
        return Share(0, 0, None, None)
    interval = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return Share(k, n, float(interval.low), float(interval.high))


def reviewer_quality(votes: Iterable[VoteRecord]) -> list[ReviewerQuality]:
    """Every reviewer's numbers and flags, most flags first, then by name."""
    votes = list(votes)
    by_battle: dict[int, list[VoteRecord]] = {}
    for vote in votes:
        by_battle.setdefault(vote.battle_id, []).append(vote)
    by_reviewer: dict[str, list[VoteRecord]] = {}
    for vote in votes:
        by_reviewer.setdefault(vote.reviewer, []).append(vote)
    rows = [_quality(name, mine, by_battle) for name, mine in by_reviewer.items()]
    return sorted(rows, key=lambda r: (-len(r.flags), r.reviewer))


def _quality(
    name: str, mine: list[VoteRecord], by_battle: dict[int, list[VoteRecord]]
) -> ReviewerQuality:
    checks = [v for v in mine if v.gold]
    accuracy = share(sum(v.choice == v.gold for v in checks), len(checks))
    agreed = shared = 0
    for vote in mine:
        others = Counter(v.choice for v in by_battle[vote.battle_id] if v.reviewer != name)
        ranked = others.most_common(2)
        if sum(others.values()) < 2 or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
            continue  # no majority among the others to agree with
        shared += 1
        agreed += vote.choice == ranked[0][0]
    decisive = [v for v in mine if v.choice in ("a", "b")]
    left = share(sum(v.choice == "a" for v in decisive), len(decisive))
    timed = [v for v in mine if v.seconds is not None]
    fast = share(sum(v.seconds < v.words / READ_WORDS_PER_SECOND for v in timed), len(timed))
    median = statistics.median(v.seconds for v in timed) if timed else None
    quality = ReviewerQuality(name, len(mine), accuracy, share(agreed, shared), left, median,
                              fast, ())  # fmt: skip
    return ReviewerQuality(**{**quality.__dict__, "flags": _flags(quality, mine)})


def _flags(q: ReviewerQuality, mine: list[VoteRecord]) -> tuple[str, ...]:
    flags = []
    if q.n_votes >= MIN_VOTES_TO_FLAG:
        choice, count = Counter(v.choice for v in mine).most_common(1)[0]
        if count / q.n_votes >= SAME_BUTTON_SHARE:
            flags.append(f"chose {choice!r} in {count} of {q.n_votes} votes")
    if q.too_fast.n >= MIN_VOTES_TO_FLAG and q.too_fast.rate >= TOO_FAST_SHARE:
        flags.append(f"{q.too_fast.k} of {q.too_fast.n} votes came faster than the answers "
                     "could be read")  # fmt: skip
    if q.accuracy.n >= MIN_CHECKS_TO_FLAG and q.accuracy.high < LOW_ACCURACY:
        flags.append(f"right on {q.accuracy.k} of {q.accuracy.n} checks")
    if q.agreement.n >= MIN_VOTES_TO_FLAG and q.agreement.high < 0.5:
        flags.append(f"agreed with the others' majority on {q.agreement.k} of "
                     f"{q.agreement.n} shared battles")  # fmt: skip
    return tuple(flags)


def trusted(qualities: Iterable[ReviewerQuality], min_accuracy: float) -> tuple[set[str], list]:
    """The reviewers whose votes count at this accuracy on checks (those without any check
    stay: nothing says they are careless), and the ones left out."""
    keep, dropped = set(), []
    for q in qualities:
        if q.accuracy.n and q.accuracy.rate < min_accuracy:
            dropped.append(q)
        else:
            keep.add(q.reviewer)
    return keep, dropped
