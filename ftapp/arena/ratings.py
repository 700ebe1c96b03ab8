"""Ratings and pairwise verdicts from arena votes: Bradley–Terry ratings on the Elo-like scale
with bootstrap intervals, per-pair win counts and rates, and a plain-words verdict per pair.

Pure functions over `Outcome` records; the store and the UI feed them and show the results.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from ftapp.errors import ValidationError
from ftapp.records import VoteChoice
from ftapp.text import plural

CHOICES = tuple(choice.value for choice in VoteChoice)  # the four vote buttons
# Points for the left model per choice: a tie and "both bad" are each half a win for both sides.
SCORE_A = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}
# Weight of the L2 prior on the natural-scale ratings, i.e. a normal prior with sd ~22
# (~3,900 Elo points). Invisible next to any real evidence (it moves a 3-1 record by ~0.0015),
# yet it keeps the fit finite when a model won every vote (10-0 ends ~1,250 points ahead).
PRIOR = 1e-3
ELO = 400 / math.log(10)
_Z95 = 1.96
# No winner is named on fewer votes: on a handful the percentile bootstrap is far too narrow
# (3 wins and 1 tie never resample below 50%, and 1-0 gives the interval [100%, 100%]).
MIN_VOTES = 10


@dataclass(frozen=True)
class Outcome:
    """One vote on one battle: who sat left (a) and right (b), and what the reviewer chose."""

    model_a: str
    model_b: str
    choice: str  # one of CHOICES; "tie" and "both_bad" both count as half a win each

    def __post_init__(self) -> None:
        if self.choice not in CHOICES:
            raise ValidationError(
                f"Unknown vote {self.choice!r}: expected one of {', '.join(CHOICES)}."
            )
        if self.model_a == self.model_b:
            raise ValidationError(
                f"A battle needs two different models, got {self.model_a!r} twice."
            )


@dataclass(frozen=True)
class Rating:
    model: str
    rating: float
    lower: float | None  # 95% bootstrap interval; None without usable replicates
    upper: float | None
    n_votes: int
    wins: int
    losses: int
    ties: int  # ties and "both bad"


@dataclass(frozen=True)
class PairStats:
    model_1: str
    model_2: str
    n: int
    wins_1: int
    wins_2: int
    ties: int  # ties and "both bad"

    @property
    def win_rate_1(self) -> float:
        return (self.wins_1 + 0.5 * self.ties) / self.n


@dataclass(frozen=True)
class Verdict:
    model_1: str
    model_2: str
    n: int
    win_rate: float | None  # of model_1; None with no votes
    lower: float | None
    upper: float | None
    is_decided: bool
    winner: str | None
    more_votes_needed: int | None
    text: str


def _points(o: Outcome, model: str) -> float:
    """What the vote gave `model`: 1 for a win, 0.5 for a tie or "both bad", 0 for a loss."""
    return SCORE_A[o.choice] if model == o.model_a else 1 - SCORE_A[o.choice]


def _cells(outcomes: Iterable[Outcome]) -> tuple[list[str], Counter[tuple[str, str, float]]]:
    """Vote counts per (first model, second model by name, points of the first), sorted: so
    neither the order of the votes nor who sat where changes any result, resamples included."""
    cells: Counter[tuple[str, str, float]] = Counter()
    for o in outcomes:
        first, second = sorted((o.model_a, o.model_b))
        cells[first, second, _points(o, first)] += 1
    models = sorted({m for first, second, _ in cells for m in (first, second)})
    return models, Counter(dict(sorted(cells.items())))


def _fit(wins: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Natural-scale ratings maximising the penalised likelihood of `wins[i, j]` (i over j)."""

    def objective(r: np.ndarray) -> tuple[float, np.ndarray]:
        diff = r[:, None] - r[None, :]
        pull = wins * expit(-diff)
        loss = -np.sum(wins * log_expit(diff)) + PRIOR * (r @ r)
        return loss, pull.sum(axis=0) - pull.sum(axis=1) + 2 * PRIOR * r

    x0 = np.zeros(len(wins)) if start is None else start
    # Tolerances far below anything shown (1e-8 in r is ~2e-6 Elo points). Near them the line
    # search may report "ABNORMAL" at the float precision floor; the point is converged anyway.
    opts = {"ftol": 1e-12, "gtol": 1e-8, "maxiter": 10_000}
    return minimize(objective, x0, jac=True, method="L-BFGS-B", options=opts).x


def _elo(r: np.ndarray, models: list[str], anchor: str | None) -> np.ndarray:
    shift = r[models.index(anchor)] if anchor in models else r.mean()
    return 1000 + ELO * (r - shift)


def _win_matrix(models: list[str], cells: Counter, counts: Iterable[float]) -> np.ndarray:
    index = {m: i for i, m in enumerate(models)}
    wins = np.zeros((len(models), len(models)))
    for (first, second, points), count in zip(cells, counts, strict=True):
        wins[index[first], index[second]] += count * points
        wins[index[second], index[first]] += count * (1 - points)
    return wins


def bradley_terry(outcomes: Iterable[Outcome], anchor: str | None = "base") -> dict[str, float]:
    """Bradley–Terry maximum-likelihood ratings (under a very weak prior, see `PRIOR`) as
    1000 + 400/ln(10) * r, with `anchor` at exactly 1000 when it has votes, otherwise the mean
    at 1000. Groups of models never compared with each other are placed only by the prior."""
    models, cells = _cells(outcomes)
    if not models:
        return {}
    ratings = _elo(_fit(_win_matrix(models, cells, cells.values())), models, anchor)
    return dict(zip(models, ratings.tolist(), strict=True))


def bootstrap_ratings(
    outcomes: Iterable[Outcome], anchor: str | None = "base", n_boot: int = 1000, seed: int = 0
) -> dict[str, np.ndarray]:
    """Ratings refitted on `n_boot` resamples of the votes, per model.

    A model may be missing from a replicate when it has few votes; it is left out of that
    replicate's fit (its array is then shorter than n_boot). Each replicate is placed on the
    point estimate's scale: the anchor at 1000 when the replicate has it (so the anchor's own
    interval is [1000, 1000] and the others' carry the uncertainty relative to it), otherwise
    the mean of the replicate's models at their point estimates' mean.
    """
    models, cells = _cells(outcomes)
    if not models:
        return {}
    counts = np.array(list(cells.values()), dtype=float)
    point = _fit(_win_matrix(models, cells, counts))
    point_elo = _elo(point, models, anchor)
    draws = np.random.default_rng(seed).multinomial(
        int(counts.sum()), counts / counts.sum(), n_boot
    )
    samples: dict[str, list[float]] = {m: [] for m in models}
    for draw in draws:
        wins = _win_matrix(models, cells, draw)
        present = np.flatnonzero((wins + wins.T).sum(axis=1) > 0)
        names = [models[i] for i in present]
        sub = wins[np.ix_(present, present)]
        elo = 1000 + ELO * _fit(sub, point[present])
        reference = [names.index(anchor)] if anchor in names else list(range(len(names)))
        elo += point_elo[present[reference]].mean() - elo[reference].mean()
        for name, value in zip(names, elo.tolist(), strict=True):
            samples[name].append(value)
    return {m: np.array(v) for m, v in samples.items()}


def rating_table(
    outcomes: Iterable[Outcome], anchor: str | None = "base", n_boot: int = 1000, seed: int = 0
) -> list[Rating]:
    """One row per model, best first: point estimate from all votes, 95% percentile bootstrap
    interval, and the model's own record."""
    outcomes = list(outcomes)
    ratings = bradley_terry(outcomes, anchor)
    samples = bootstrap_ratings(outcomes, anchor, n_boot, seed)
    tally = Counter((m, _points(o, m)) for o in outcomes for m in (o.model_a, o.model_b))
    rows = []
    for model, rating in ratings.items():
        values = samples[model]
        lower, upper = np.percentile(values, [2.5, 97.5]).tolist() if len(values) else (None, None)
        wins, losses, ties = tally[model, 1.0], tally[model, 0.0], tally[model, 0.5]
        rows.append(Rating(model, rating, lower, upper, wins + losses + ties, wins, losses, ties))
    return sorted(rows, key=lambda row: (-row.rating, row.model))


def _pair(model_1: str, model_2: str, points: list[float]) -> PairStats:
    wins, losses = points.count(1.0), points.count(0.0)
    return PairStats(model_1, model_2, len(points), wins, losses, len(points) - wins - losses)


def pair_stats(outcomes: Iterable[Outcome]) -> list[PairStats]:
    """Win counts per unordered pair with votes, model_1 before model_2 by name."""
    points: dict[tuple[str, str], list[float]] = {}
    for o in outcomes:
        first, second = sorted((o.model_a, o.model_b))
        points.setdefault((first, second), []).append(_points(o, first))
    return [_pair(m1, m2, p) for (m1, m2), p in sorted(points.items())]


def win_rate_matrix(outcomes: Iterable[Outcome]) -> tuple[list[str], list[list[float | None]]]:
    """Models by name and the win rate of row against column (None on the diagonal and for
    pairs without votes)."""
    stats = pair_stats(outcomes)
    models = sorted({m for s in stats for m in (s.model_1, s.model_2)})
    index = {m: i for i, m in enumerate(models)}
    matrix: list[list[float | None]] = [[None] * len(models) for _ in models]
    for s in stats:
        matrix[index[s.model_1]][index[s.model_2]] = s.win_rate_1
        matrix[index[s.model_2]][index[s.model_1]] = 1 - s.win_rate_1
    return models, matrix


def _verdict(stats: PairStats, n_boot: int, seed: int, min_votes: int) -> Verdict:
    m1, m2, n = stats.model_1, stats.model_2, stats.n
    if n == 0:
        text = f"{m1} vs {m2}: no votes yet"
        return Verdict(m1, m2, 0, None, None, None, False, None, None, text)
    # Each vote scores 1, 0.5 or 0 for model_1, so a resample is a multinomial draw of the three.
    shares = np.array([stats.wins_1, stats.ties, stats.wins_2]) / n
    draws = np.random.default_rng(seed).multinomial(n, shares, n_boot)
    lower, upper = np.percentile((draws[:, 0] + 0.5 * draws[:, 1]) / n, [2.5, 97.5]).tolist()
    rate = stats.win_rate_1
    votes = plural(n, "vote")
    if n >= min_votes and (lower > 0.5 or upper < 0.5):
        if rate > 0.5:
            winner, loser, shown = m1, m2, (rate, lower, upper)
        else:
            winner, loser, shown = m2, m1, (1 - rate, 1 - upper, 1 - lower)
        text = f"{winner} beats {loser} (win rate {_ci(*shown)}, {votes})"
        return Verdict(m1, m2, n, rate, lower, upper, True, winner, None, text)
    text = f"{m1} vs {m2}: not yet decided (win rate {_ci(rate, lower, upper)}, {votes}); "
    if stats.wins_1 == stats.wins_2:
        more = None
        text += "the two look even so far; no number of votes can be promised"
    else:
        sd = math.sqrt(shares @ (np.array([1.0, 0.5, 0.0]) - rate) ** 2)
        needed = math.ceil((_Z95 * sd / abs(rate - 0.5)) ** 2)
        more = max(needed - n, min_votes - n, 1)
        text += f"about {plural(more, 'more vote')} would likely settle it"
    return Verdict(m1, m2, n, rate, lower, upper, False, None, more, text)


def _ci(rate: float, lower: float, upper: float) -> str:
    return f"{rate:.0%}, 95% CI [{lower:.0%}, {upper:.0%}]"


def pair_verdict(
    outcomes: Iterable[Outcome],
    model_1: str,
    model_2: str,
    n_boot: int = 2000,
    seed: int = 0,
    min_votes: int = MIN_VOTES,
) -> Verdict:
    """Whether model_1 or model_2 wins more often, from the votes between the two only: decided
    when the pair has at least `min_votes` votes and the 95% bootstrap interval of the win rate
    excludes 50%."""
    if model_1 == model_2:
        raise ValidationError(f"Compare two different models, got {model_1!r} twice.")
    pair = {model_1, model_2}
    points = [_points(o, model_1) for o in outcomes if {o.model_a, o.model_b} == pair]
    return _verdict(_pair(model_1, model_2, points), n_boot, seed, min_votes)


def verdicts(
    outcomes: Iterable[Outcome], n_boot: int = 2000, seed: int = 0, min_votes: int = MIN_VOTES
) -> list[Verdict]:
    """A verdict for every pair with votes, in `pair_stats` order."""
    return [_verdict(s, n_boot, seed, min_votes) for s in pair_stats(outcomes)]
