"""The quality of the judging itself: position bias (does the left side win too often?),
agreement between reviewers (Cohen's kappa per pair, Fleiss' kappa overall) and each
reviewer's vote counts.

Pure functions over `Outcome` and `Judgement` records; the store and the UI feed them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from scipy.stats import binomtest

from ftapp.arena.ratings import CHOICES, Outcome
from ftapp.errors import ValidationError
from ftapp.text import plural


@dataclass(frozen=True)
class PositionBias:
    n_decisive: int
    left_wins: int
    rate: float | None  # share of decisive votes won by the left side; None without any
    lower: float | None  # exact (Clopper-Pearson) 95% interval
    upper: float | None

    @property
    def text(self) -> str:
        if self.rate is None or self.lower is None or self.upper is None:
            return "no decisive votes yet: position bias can't be judged"
        if self.lower > 0.5:
            finding = "reviewers favour the left side"
        elif self.upper < 0.5:
            finding = "reviewers favour the right side"
        else:
            finding = "no sign of position bias"
        return (
            f"left side won {self.rate:.0%} of {plural(self.n_decisive, 'decisive vote')} "
            f"(95% CI [{self.lower:.0%}, {self.upper:.0%}]): {finding}"
        )


@dataclass(frozen=True)
class Judgement:
    """One reviewer's vote on one battle. Labels are the raw choices: every reviewer of a
    battle sees the same sides, so "a" means the same answer for all of them."""

    item: Hashable
    reviewer: str
    label: str

    def __post_init__(self) -> None:
        if self.label not in CHOICES:
            raise ValidationError(
                f"Unknown vote {self.label!r} by {self.reviewer}: expected one of "
                f"{', '.join(CHOICES)}."
            )


@dataclass(frozen=True)
class ReviewerPair:
    reviewer_1: str
    reviewer_2: str
    n_shared: int
    percent_agreement: float  # share of shared battles with the same vote, 0 to 1
    kappa: float | None


@dataclass(frozen=True)
class ReviewerCount:
    reviewer: str
    n_votes: int
    a: int
    b: int
    tie: int
    both_bad: int


def position_bias(outcomes: Iterable[Outcome]) -> PositionBias:
    """How often the left side (a) won among the decisive votes (a or b), with an exact
    95% interval; 50% means the seat doesn't matter."""
    choices = Counter(o.choice for o in outcomes)
    left, n = choices["a"], choices["a"] + choices["b"]
    if n == 0:
        return PositionBias(0, 0, None, None, None)
    ci = binomtest(left, n).proportion_ci(confidence_level=0.95, method="exact")
    return PositionBias(n, left, left / n, float(ci.low), float(ci.high))


def cohen_kappa(labels_1: Sequence[str], labels_2: Sequence[str]) -> float | None:
    """Unweighted Cohen's kappa of two raters on the same items, in the same order; None with
    no items or when chance agreement is certain (both always gave one and the same label)."""
    if len(labels_1) != len(labels_2):
        raise ValidationError(
            f"Kappa needs both raters on the same items: got {len(labels_1)} and "
            f"{len(labels_2)} labels."
        )
    n = len(labels_1)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(labels_1, labels_2, strict=True))
    counts_1, counts_2 = Counter(labels_1), Counter(labels_2)
    # Kept as integers over n^2 so that "chance agreement is 1" is an exact test.
    chance = sum(counts_1[label] * counts_2[label] for label in counts_1)
    if chance == n * n:
        return None
    return (observed * n - chance) / (n * n - chance)


def fleiss_kappa(
    ratings: Mapping[Hashable, Sequence[str]], categories: Sequence[str] = CHOICES
) -> float | None:
    """Fleiss' kappa over the items with at least 2 ratings (others are ignored), generalised to
    items with different numbers of raters; None with no such items or when chance agreement is
    certain (every rating in one category)."""
    unknown = {label for labels in ratings.values() for label in labels} - set(categories)
    if unknown:
        raise ValidationError(
            f"Unknown label(s) {', '.join(map(repr, sorted(unknown)))}: expected one of "
            f"{', '.join(categories)}."
        )
    rows = [Counter(labels) for labels in ratings.values() if len(labels) >= 2]
    if not rows:
        return None
    # P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1)): the share of agreeing rater pairs on item i.
    agreement = [
        (sum(c * c for c in row.values()) - row.total()) / (row.total() * (row.total() - 1))
        for row in rows
    ]
    totals = Counter()
    for row in rows:
        totals.update(row)
    n_ratings = sum(totals.values())
    chance_numerator = sum(count * count for count in totals.values())
    if chance_numerator == n_ratings * n_ratings:
        return None
    chance = chance_numerator / (n_ratings * n_ratings)
    mean_agreement = sum(agreement) / len(agreement)
    return (mean_agreement - chance) / (1 - chance)


def _latest(judgements: Iterable[Judgement]) -> dict[str, dict[Hashable, str]]:
    # A reviewer should vote once per battle; if a second vote slips in, the later one wins,
    # as a changed mind would.
    votes: dict[str, dict[Hashable, str]] = {}
    for j in judgements:
        votes.setdefault(j.reviewer, {})[j.item] = j.label
    return votes


def reviewer_agreement(
    judgements: Iterable[Judgement],
) -> tuple[list[ReviewerPair], float | None]:
    """Cohen's kappa for every pair of reviewers sharing at least one battle (reviewer_1 before
    reviewer_2 by name), and Fleiss' kappa over all battles with two or more reviewers. Only a
    reviewer's last judgement of a battle counts."""
    votes = _latest(judgements)
    pairs = []
    for first, second in combinations(sorted(votes), 2):
        shared = [item for item in votes[first] if item in votes[second]]
        if not shared:
            continue
        labels_1 = [votes[first][item] for item in shared]
        labels_2 = [votes[second][item] for item in shared]
        same = sum(x == y for x, y in zip(labels_1, labels_2, strict=True))
        kappa = cohen_kappa(labels_1, labels_2)
        pairs.append(ReviewerPair(first, second, len(shared), same / len(shared), kappa))
    by_item: dict[Hashable, list[str]] = {}
    for reviewer_votes in votes.values():
        for item, label in reviewer_votes.items():
            by_item.setdefault(item, []).append(label)
    return pairs, fleiss_kappa(by_item)


def reviewer_counts(judgements: Iterable[Judgement]) -> list[ReviewerCount]:
    """Each reviewer's votes by choice, by reviewer name; the last vote per battle counts."""
    rows = []
    for reviewer, reviewer_votes in sorted(_latest(judgements).items()):
        c = Counter(reviewer_votes.values())
        rows.append(
            ReviewerCount(reviewer, len(reviewer_votes), c["a"], c["b"], c["tie"], c["both_bad"])
        )
    return rows
