"""Style-controlled ratings on simulated votes (seeded): a model whose answers are only longer
wins the plain ratings, because the simulated reviewers like length; once length is a
covariate it ties with base, and the fitted length effect is the one the votes were drawn
with. The fit matches an independent one, statsmodels' GLM on the same design matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ftapp.arena.ratings import Outcome, Rating, rating_table
from ftapp.arena.style import (
    StyledVote,
    changed_leaders,
    design_matrix,
    fit,
    style_control,
    style_of,
)

LENGTH_EFFECT = 0.8  # natural-scale log-odds per standard deviation of the length difference
QUALITY = {"base": 0.0, "long": 0.0, "good": 0.6}  # "long" is no better, only longer
MEAN_TOKENS = {"base": 120, "long": 240, "good": 120}


def simulate(n: int = 1500, seed: int = 0) -> list[StyledVote]:
    rng = np.random.default_rng(seed)
    pairs = [("base", "long"), ("base", "good"), ("long", "good")]
    drawn = []
    for _ in range(n):
        a, b = pairs[rng.integers(len(pairs))]
        if rng.random() < 0.5:
            a, b = b, a
        length = {m: float(rng.lognormal(math.log(MEAN_TOKENS[m]), 0.3)) for m in (a, b)}
        headers = {m: float(rng.integers(0, 2)) for m in (a, b)}  # noise, no effect
        drawn.append((a, b, length, headers))
    # The length covariate's spread, as the model standardises it.
    diffs = np.array([(la[a] - la[b]) / (la[a] + la[b]) for a, b, la, _ in drawn])
    sd = diffs.std()
    votes = []
    for (a, b, length, headers), diff in zip(drawn, diffs, strict=True):
        z = QUALITY[a] - QUALITY[b] + LENGTH_EFFECT * diff / sd
        u = rng.random()
        p_a = 1 / (1 + math.exp(-z))
        choice = "tie" if u < 0.1 else ("a" if rng.random() < p_a else "b")
        style = {m: {"length": length[m], "headers": headers[m], "bold": 0.0,
                     "list_items": 0.0} for m in (a, b)}  # fmt: skip
        votes.append(StyledVote(Outcome(a, b, choice), style[a], style[b]))
    return votes


def test_a_model_that_is_only_longer_ties_once_length_is_controlled():
    votes = simulate()
    raw = rating_table([v.outcome for v in votes], n_boot=200)
    raw_by = {r.model: r for r in raw}
    assert raw_by["long"].lower > 1000  # plain ratings: "long" beats base, by length alone
    styled = style_control(votes, n_boot=100, raw=raw)
    by = {r.model: r for r in styled.ratings}
    assert by["base"].rating == 1000
    assert by["long"].lower < 1000 < by["long"].upper  # a tie with base once controlled
    assert abs(by["long"].rating - 1000) < abs(raw_by["long"].rating - 1000) / 3
    assert by["good"].lower > 1000  # the truly better model stays ahead
    length = next(e for e in styled.effects if e.feature == "length")
    assert length.coefficient == pytest.approx(LENGTH_EFFECT, abs=0.2)
    assert length.low < LENGTH_EFFECT < length.high
    assert length.elo > 0 and "reviewers favoured the longer answer" in length.text
    assert "Elo for an answer twice as long" in length.text
    headers = next(e for e in styled.effects if e.feature == "headers")
    assert headers.low < 0 < headers.high and "no clear preference" in headers.text
    # "long" was above "good"? no: but its order against base changed.
    assert (
        any(
            "controlling for style changes the winner: base is ahead of long" in n or "long" in n
            for n in styled.notes
        )
        or by["long"].rating < raw_by["long"].rating
    )


def test_the_fit_matches_statsmodels_on_the_same_design():
    import statsmodels.api as sm

    votes = simulate(600, seed=3)
    d = design_matrix(votes)
    assert d.rated == ["good", "long"] and d.features == ["length", "headers"]
    ours = fit(d.x, d.y, d.weights, prior=0.0)
    theirs = sm.GLM(d.y, d.x, family=sm.families.Binomial(), freq_weights=d.weights).fit()
    assert ours == pytest.approx(theirs.params, abs=1e-4)
    # The default very weak prior moves nothing visible.
    assert fit(d.x, d.y, d.weights) == pytest.approx(theirs.params, abs=5e-3)


def test_a_tie_is_half_a_win_each_and_style_counts_markdown():
    plain = {"length": 10.0, "headers": 0.0, "bold": 0.0, "list_items": 0.0}
    votes = [StyledVote(Outcome("base", "x", "tie"), plain, {**plain, "length": 30.0})]
    d = design_matrix(votes)
    assert list(d.y) == [1.0, 0.0] and list(d.weights) == [0.5, 0.5] and d.rated == ["x"]
    assert list(d.vote_of_row) == [0, 0]
    assert d.features == []  # one vote: no feature varies, nothing to control for
    assert style_control(votes) is None
    text = "# Title\n\nSome **bold** and __more__.\n\n- one\n- two\n1. three\n"
    assert style_of(text, lambda texts: [len(t.split()) for t in texts]) == {
        "length": 12.0, "headers": 1, "bold": 2, "list_items": 3}  # fmt: skip


def test_the_pairs_whose_leader_changes_are_named():
    raw = [Rating("long", 1100, 1050, 1150, 30, 20, 10, 0), Rating("base", 1000, 1000, 1000,
                                                                   30, 10, 20, 0)]  # fmt: skip
    styled = [Rating("base", 1000, 1000, 1000, 30, 10, 20, 0),
              Rating("long", 990, 940, 1040, 30, 20, 10, 0)]  # fmt: skip
    assert changed_leaders(raw, styled) == [
        "controlling for style changes the winner: base is ahead of long once length and "
        "formatting are accounted for"]  # fmt: skip
    assert changed_leaders(raw, raw) == []
