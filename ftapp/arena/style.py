"""Style-controlled ratings: what a model's rating is once the reviewers' taste for longer or
more heavily formatted answers is accounted for, so a fine-tune can't win the leaderboard by
writing more.

The model is LMArena's style control: the Bradley–Terry logistic regression of the votes
(P(A wins) = sigmoid(r_A - r_B + sum_k beta_k x_k)) with, for each vote, the difference
between the two answers in length (tokens) and in Markdown (headers, bold spans, list items)
as covariates, each a normalised difference (a - b) / (a + b), standardised over the votes.
A tie (or "both bad") counts half a win for each side, as in the plain ratings. The ratings
are on the same Elo-like scale (base at 1000); each coefficient is also said in words, e.g.
"+40 Elo for an answer twice as long". Intervals are percentile bootstraps over the votes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from ftapp.arena.ratings import ELO, PRIOR, SCORE_A, Outcome, Rating

FEATURES = ("length", "headers", "bold", "list_items")
WORDS = {
    "length": "the longer answer",
    "headers": "the answer with more headers",
    "bold": "the answer with more bold text",
    "list_items": "the answer with more list items",
}
_HEADER = re.compile(r"^\s{0,3}#{1,6}\s", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+", re.MULTILINE)
N_BOOT = 200


@dataclass(frozen=True)
class StyledVote:
    """A vote and the style of the two answers it judged."""

    outcome: Outcome
    style_a: dict[str, float]  # FEATURES -> count (tokens for length)
    style_b: dict[str, float]


@dataclass(frozen=True)
class StyleEffect:
    feature: str
    coefficient: float  # per standard deviation of the normalised difference (natural scale)
    low: float | None
    high: float | None
    elo: float  # in Elo points, for what `example` says
    example: str  # "an answer twice as long", "headers on one side only"

    @property
    def text(self) -> str:
        favoured = WORDS[self.feature] if self.elo >= 0 else WORDS[self.feature].replace(
            "more", "fewer").replace("longer", "shorter")  # fmt: skip
        decided = self.low is not None and (self.low > 0 or self.high < 0)
        how = "reviewers favoured" if decided else "no clear preference for"
        return f"{how} {favoured}: {self.elo:+.0f} Elo for {self.example}"


@dataclass(frozen=True)
class StyleControl:
    ratings: list[Rating]  # style-controlled, best first
    effects: list[StyleEffect]
    notes: list[str]  # pairs whose winner changes once style is controlled for
    n_votes: int


def style_of(text: str, count_tokens: Callable[[list[str]], list[int]]) -> dict[str, float]:
    """An answer's style counts: its tokens, Markdown headers, bold spans and list items."""
    return style_counts(text, count_tokens([text])[0])


def style_counts(text: str, tokens: int) -> dict[str, float]:
    """The style counts of an answer whose tokens were counted already (in a batch)."""
    return {
        "length": float(tokens),
        "headers": len(_HEADER.findall(text)),
        "bold": len(_BOLD.findall(text)),
        "list_items": len(_LIST_ITEM.findall(text)),
    }


@dataclass(frozen=True)
class Design:
    x: np.ndarray
    y: np.ndarray
    weights: np.ndarray
    vote_of_row: np.ndarray  # which vote each row comes from (a tie makes two rows)
    rated: list[str]  # the models of the first columns (not the anchor)
    features: list[str]  # the style features of the other columns
    sds: dict[str, float]  # each feature's standard deviation before standardising


def design_matrix(votes: Sequence[StyledVote], anchor: str | None = "base") -> Design:
    """The regression's rows: per vote, +1 for the left model and -1 for the right one (the
    anchor has no column: its rating is 0), then the standardised style differences; a tie is
    two rows, a win and a loss, of weight one half. A feature that never varies is left out."""
    models = sorted({m for v in votes for m in (v.outcome.model_a, v.outcome.model_b)})
    rated = [m for m in models if m != anchor]
    column = {m: i for i, m in enumerate(rated)}
    raw = np.array([[_normalised(v.style_a[f], v.style_b[f]) for f in FEATURES] for v in votes])
    sds = raw.std(axis=0) if len(votes) else np.zeros(len(FEATURES))
    kept = [i for i, sd in enumerate(sds) if sd > 1e-12]  # a feature that never varies: out
    features = [FEATURES[i] for i in kept]
    rows, ys, weights, owners = [], [], [], []
    for index, (vote, style) in enumerate(zip(votes, raw, strict=True)):
        x = np.zeros(len(rated) + len(kept))
        if vote.outcome.model_a in column:
            x[column[vote.outcome.model_a]] += 1
        if vote.outcome.model_b in column:
            x[column[vote.outcome.model_b]] -= 1
        x[len(rated) :] = style[kept] / sds[kept]
        score = SCORE_A[vote.outcome.choice]
        for y, weight in ((1.0, score), (0.0, 1 - score)):
            if weight:
                rows.append(x)
                ys.append(y)
                weights.append(weight)
                owners.append(index)
    width = len(rated) + len(kept)
    return Design(np.array(rows).reshape(-1, width), np.array(ys), np.array(weights),
                  np.array(owners, dtype=int), rated, features,
                  {FEATURES[i]: float(sds[i]) for i in kept})  # fmt: skip


def fit(x: np.ndarray, y: np.ndarray, weights: np.ndarray, prior: float = PRIOR) -> np.ndarray:
    """Weighted logistic regression without intercept, by maximum likelihood (under the same
    very weak prior as the plain ratings, which only keeps a 10-0 record finite)."""

    def objective(beta: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ beta
        loss = -(weights * (y * log_expit(z) + (1 - y) * log_expit(-z))).sum()
        grad = -x.T @ (weights * (y - expit(z)))
        return loss + prior * beta @ beta, grad + 2 * prior * beta

    options = {"ftol": 1e-12, "gtol": 1e-8, "maxiter": 10_000}
    return minimize(objective, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B",
                    options=options).x  # fmt: skip


def style_control(
    votes: Sequence[StyledVote], anchor: str | None = "base", n_boot: int = N_BOOT, seed: int = 0,
    raw: Sequence[Rating] = (),
) -> StyleControl | None:  # fmt: skip
    """Style-controlled ratings and the style effects, with bootstrap intervals; the pairs
    whose leader in `raw` (the plain ratings) changes once style is controlled for. None
    without votes, or when no style feature varies (then there is nothing to control for)."""
    if not votes:
        return None
    design = design_matrix(votes, anchor)
    if not design.features:
        return None
    point = fit(design.x, design.y, design.weights)
    # Bootstrap: votes drawn with replacement, as weights on the rows of the one design (the
    # standardisation stays the full sample's); a replicate missing a model is left out.
    rng = np.random.default_rng(seed)
    n_rated, samples = len(design.rated), []
    for _ in range(n_boot):
        drawn = np.bincount(rng.integers(0, len(votes), len(votes)), minlength=len(votes))
        weights = design.weights * drawn[design.vote_of_row]
        present = np.abs(design.x[:, :n_rated]).T @ weights
        if (present > 0).all():
            samples.append(fit(design.x, design.y, weights))
    boot = np.array(samples).reshape(-1, len(point))
    ratings = _ratings(point, boot, design.rated, anchor, votes)
    effects = [_effect(f, point[n_rated + i], boot[:, n_rated + i] if len(boot) else None,
                       design.sds[f]) for i, f in enumerate(design.features)]  # fmt: skip
    return StyleControl(ratings, effects, changed_leaders(raw, ratings), len(votes))


def _ratings(point, boot, rated, anchor, votes) -> list[Rating]:
    models = sorted({m for v in votes for m in (v.outcome.model_a, v.outcome.model_b)})
    tally = {m: [0.0, 0.0, 0.0] for m in models}  # wins, losses, ties
    for v in votes:
        score = SCORE_A[v.outcome.choice]
        for model, points in ((v.outcome.model_a, score), (v.outcome.model_b, 1 - score)):
            tally[model][0 if points == 1 else 1 if points == 0 else 2] += 1
    rows = []
    for model in models:
        if model in rated:
            i = rated.index(model)
            value, column = float(point[i]), boot[:, i] if len(boot) else np.array([])
        else:  # the anchor
            value, column = 0.0, np.zeros(len(boot))
        lower, upper = (np.percentile(column, [2.5, 97.5]).tolist() if len(column)
                        else (None, None))  # fmt: skip
        wins, losses, ties = tally[model]
        rows.append(Rating(model, 1000 + ELO * value,
                           None if lower is None else 1000 + ELO * lower,
                           None if upper is None else 1000 + ELO * upper,
                           wins + losses + ties, wins, losses, ties))  # fmt: skip
    return sorted(rows, key=lambda r: (-r.rating, r.model))


def _effect(feature: str, coefficient: float, column, sd: float) -> StyleEffect:
    low, high = (np.percentile(column, [2.5, 97.5]).tolist() if column is not None
                 and len(column) else (None, None))  # fmt: skip
    if feature == "length":  # an answer twice as long: (2b - b) / (2b + b) = 1/3
        difference, example = 1 / 3, "an answer twice as long"
    else:  # some on one side, none on the other: (a - 0) / (a + 0) = 1
        difference, example = 1.0, f"{feature.replace('_', ' ')} on one side only"
    return StyleEffect(feature, float(coefficient), low, high,
                       ELO * coefficient * difference / sd, example)  # fmt: skip


def changed_leaders(raw: Sequence[Rating], styled: list[Rating]) -> list[str]:
    """Pairs whose order differs between the plain and the style-controlled ratings."""
    before = {r.model: r.rating for r in raw}
    after = {r.model: r for r in styled}
    notes = []
    names = [r.model for r in raw if r.model in after]
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if (before[first] - before[second]) * (after[first].rating - after[second].rating) < 0:
                ahead, behind = (first, second) if after[first].rating > after[second].rating \
                    else (second, first)  # fmt: skip
                notes.append(f"controlling for style changes the winner: {ahead} is ahead of "
                             f"{behind} once length and formatting are accounted for")  # fmt: skip
    return notes


def _normalised(a: float, b: float) -> float:
    return 0.0 if a + b == 0 else (a - b) / (a + b)
