"""Bradley–Terry ratings, bootstrap intervals and pair verdicts: hand-worked cases, an
independent fit (Hunter's MM algorithm, not scipy.optimize), and the invariants."""

from __future__ import annotations

import math
import random
import re
import sqlite3

import numpy as np
import pytest

from ftapp.arena.ratings import (
    CHOICES,
    MIN_VOTES,
    Outcome,
    PairStats,
    bootstrap_ratings,
    bradley_terry,
    pair_stats,
    pair_verdict,
    rating_table,
    verdicts,
    win_rate_matrix,
)
from ftapp.errors import ValidationError

ELO = 400 / math.log(10)
SWAP = {"a": "b", "b": "a", "tie": "tie", "both_bad": "both_bad"}


def votes(model_a: str, model_b: str, **counts: int) -> list[Outcome]:
    return [Outcome(model_a, model_b, choice) for choice, n in counts.items() for _ in range(n)]


def random_outcomes(seed: int, models: list[str], n: int) -> list[Outcome]:
    """Votes drawn from known strengths, with ties, so that every pair meets often."""
    rng = random.Random(seed)
    strength = {m: rng.gauss(0, 0.8) for m in models}
    outcomes = []
    for _ in range(n):
        a, b = rng.sample(models, 2)
        p_a = 1 / (1 + math.exp(strength[b] - strength[a]))
        u = rng.random()
        choice = (
            "tie" if u < 0.15 else "both_bad" if u < 0.2 else "a" if rng.random() < p_a else "b"
        )
        outcomes.append(Outcome(a, b, choice))
    return outcomes


def mm_bradley_terry(outcomes: list[Outcome]) -> dict[str, float]:
    """Hunter's (2004) MM iteration for the plain Bradley–Terry MLE, ties as half wins; on the
    Elo-like scale with the mean at 1000."""
    models = sorted({m for o in outcomes for m in (o.model_a, o.model_b)})
    index = {m: i for i, m in enumerate(models)}
    wins = np.zeros((len(models), len(models)))
    for o in outcomes:
        a, b = index[o.model_a], index[o.model_b]
        share = {"a": 1.0, "b": 0.0}.get(o.choice, 0.5)
        wins[a, b] += share
        wins[b, a] += 1 - share
    games = wins + wins.T
    strength = np.ones(len(models))
    for _ in range(100_000):
        new = wins.sum(axis=1) / (games / (strength[:, None] + strength[None, :])).sum(axis=1)
        new /= np.exp(np.log(new).mean())
        if np.max(np.abs(new - strength)) < 1e-13:
            break
        strength = new
    r = np.log(strength)
    return dict(zip(models, (1000 + ELO * (r - r.mean())).tolist(), strict=True))


# --- records -----------------------------------------------------------------------------


def test_outcome_rejects_unknown_choice_and_self_battles() -> None:
    with pytest.raises(ValidationError, match="Unknown vote 'left'"):
        Outcome("base", "lora", "left")
    with pytest.raises(ValidationError, match="two different models"):
        Outcome("base", "base", "a")


# --- Bradley–Terry -----------------------------------------------------------------------


def test_three_wins_to_one_is_ln3_apart() -> None:
    ratings = bradley_terry(votes("lora", "base", a=3, b=1))
    assert ratings["base"] == 1000.0
    # Exact MLE for two models: r_lora - r_base = ln(3 / 1); 400 * log10(3) = 190.85 points.
    assert (ratings["lora"] - ratings["base"]) / ELO == pytest.approx(math.log(3), abs=1e-2)
    assert ratings["lora"] - ratings["base"] == pytest.approx(400 * math.log10(3), abs=1.0)


def test_ties_and_both_bad_count_as_half_a_win_each() -> None:
    three_to_one = bradley_terry(votes("lora", "base", a=3, b=1))
    # 2 wins + 2 ties = 3 wins vs 1 for lora.
    with_ties = bradley_terry(votes("lora", "base", a=2, tie=2))
    with_both_bad = bradley_terry(votes("lora", "base", a=2, both_bad=1, tie=1))
    assert with_ties == pytest.approx(three_to_one, abs=1e-6)
    assert with_both_bad == pytest.approx(three_to_one, abs=1e-6)


def test_anchor_is_exactly_1000_else_the_mean_is() -> None:
    outcomes = random_outcomes(1, ["base", "m1", "m2"], 200)
    assert bradley_terry(outcomes)["base"] == 1000.0
    assert bradley_terry(outcomes, anchor="m2")["m2"] == 1000.0
    for anchor in (None, "not-there"):
        assert np.mean(list(bradley_terry(outcomes, anchor=anchor).values())) == pytest.approx(
            1000.0, abs=1e-9
        )
    # The anchor only shifts the scale.
    shifted = bradley_terry(outcomes, anchor=None)
    offset = 1000.0 - shifted["base"]
    assert bradley_terry(outcomes) == pytest.approx({m: r + offset for m, r in shifted.items()})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_an_independent_mm_fit(seed: int) -> None:
    outcomes = random_outcomes(seed, ["base", "alpha", "beta", "gamma", "delta"], 400)
    # Within half an Elo point: the only difference is the module's very weak prior.
    assert bradley_terry(outcomes, anchor=None) == pytest.approx(
        mm_bradley_terry(outcomes), abs=0.5
    )


def test_renaming_models_changes_nothing() -> None:
    outcomes = random_outcomes(3, ["base", "alpha", "beta", "gamma"], 300)
    # Reversed alphabetical order, so that the internal ordering changes too.
    rename = {"base": "zz-base", "alpha": "zz-z", "beta": "zz-y", "gamma": "zz-x"}
    renamed = [Outcome(rename[o.model_a], rename[o.model_b], o.choice) for o in outcomes]
    original = bradley_terry(outcomes)
    again = bradley_terry(renamed, anchor="zz-base")
    assert {rename[m]: r for m, r in original.items()} == pytest.approx(again, abs=1e-6)


def test_swapping_sides_with_the_vote_and_reordering_change_nothing() -> None:
    outcomes = random_outcomes(4, ["base", "alpha", "beta"], 150)
    swapped = [Outcome(o.model_b, o.model_a, SWAP[o.choice]) for o in outcomes]
    shuffled = outcomes[:]
    random.Random(0).shuffle(shuffled)
    assert bradley_terry(swapped) == bradley_terry(outcomes)
    assert bradley_terry(shuffled) == bradley_terry(outcomes)
    table = rating_table(outcomes, n_boot=50)
    assert rating_table(swapped, n_boot=50) == table
    assert rating_table(shuffled, n_boot=50) == table


def test_a_model_that_won_every_vote_gets_a_finite_top_rating() -> None:
    outcomes = (
        votes("champ", "base", a=5)
        + votes("base", "champ", b=5)
        + votes("champ", "other", a=4)
        + votes("base", "other", a=3, b=2)
    )
    ratings = bradley_terry(outcomes)
    assert all(math.isfinite(r) for r in ratings.values())
    assert max(ratings, key=ratings.get) == "champ"
    assert ratings["base"] > ratings["other"]


def test_no_votes_no_ratings() -> None:
    assert bradley_terry([]) == {}
    assert rating_table([]) == []


# --- rating table and bootstrap ----------------------------------------------------------


def test_rating_table_rows_records_and_intervals() -> None:
    outcomes = (
        votes("lora", "base", a=12, b=4, tie=2, both_bad=1)
        + votes("base", "other", a=8, b=6, tie=1)
        + votes("other", "lora", b=7, a=3)
    )
    table = rating_table(outcomes, n_boot=200)
    assert [row.model for row in table] == ["lora", "base", "other"]
    assert [row.rating for row in table] == sorted((row.rating for row in table), reverse=True)
    lora = table[0]
    assert (lora.wins, lora.losses, lora.ties, lora.n_votes) == (19, 7, 3, 29)
    base = table[1]
    assert (base.wins, base.losses, base.ties, base.n_votes) == (12, 18, 4, 34)
    assert base.rating == base.lower == base.upper == 1000.0
    for row in table:
        assert row.lower <= row.rating <= row.upper
    assert lora.lower > 1000.0


def test_bootstrap_is_seeded_and_respects_n_boot() -> None:
    outcomes = random_outcomes(5, ["base", "alpha", "beta"], 120)
    samples = bootstrap_ratings(outcomes, n_boot=37, seed=7)
    assert {len(v) for v in samples.values()} == {37}
    # The seed alone decides the intervals: whatever state the global generators are in, the
    # same seed gives the same table, and another seed another one.
    np.random.seed(1)
    random.seed(1)
    first = rating_table(outcomes, n_boot=37, seed=7)
    np.random.seed(2)
    random.seed(2)
    assert rating_table(outcomes, n_boot=37, seed=7) == first
    assert rating_table(outcomes, n_boot=37, seed=8) != first


def test_four_times_the_votes_halves_the_interval() -> None:
    outcomes = random_outcomes(6, ["base", "alpha", "beta"], 120)

    def widths(data: list[Outcome]) -> dict[str, float]:
        return {r.model: r.upper - r.lower for r in rating_table(data, n_boot=300)}

    few, many = widths(outcomes), widths(outcomes * 4)
    for model in ("alpha", "beta"):
        assert 0.35 < many[model] / few[model] < 0.65


def test_a_model_missing_from_a_replicate_is_skipped_there() -> None:
    # "rare" has one vote in 41: about 1 - (40/41)^41 = 64% of resamples contain it.
    outcomes = votes("lora", "base", a=25, b=15) + votes("rare", "base", a=1)
    samples = bootstrap_ratings(outcomes, n_boot=200, seed=0)
    assert len(samples["base"]) == len(samples["lora"]) == 200
    assert 90 < len(samples["rare"]) < 170
    rare = next(row for row in rating_table(outcomes, n_boot=200) if row.model == "rare")
    assert rare.lower is not None and rare.lower <= rare.rating <= rare.upper


def test_no_replicates_no_interval() -> None:
    row = rating_table(votes("lora", "base", a=3, b=1), n_boot=0)[0]
    assert (row.model, row.lower, row.upper) == ("lora", None, None)


# --- pair counts -------------------------------------------------------------------------


def test_pair_stats_and_win_rate_matrix() -> None:
    outcomes = (
        votes("lora", "base", a=5, b=2, tie=1)
        + votes("base", "lora", a=1, both_bad=2)
        + votes("other", "lora", a=1)
    )
    assert pair_stats(outcomes) == [
        PairStats("base", "lora", 11, 3, 5, 3),
        PairStats("lora", "other", 1, 0, 1, 0),
    ]
    assert pair_stats(outcomes)[0].win_rate_1 == pytest.approx(4.5 / 11)
    models, matrix = win_rate_matrix(outcomes)
    assert models == ["base", "lora", "other"]
    assert matrix == [
        [None, pytest.approx(4.5 / 11), None],
        [pytest.approx(6.5 / 11), None, 0.0],
        [None, 1.0, None],
    ]


# --- verdicts ----------------------------------------------------------------------------


def test_decided_verdict_names_the_winner_first() -> None:
    # support-lora wins 30 of 40, from both seats.
    outcomes = votes("support-lora", "base", a=15, b=5) + votes("base", "support-lora", b=15, a=5)
    v = pair_verdict(outcomes, "base", "support-lora")
    assert (v.n, v.win_rate, v.is_decided, v.winner) == (40, 0.25, True, "support-lora")
    assert v.more_votes_needed is None
    assert v.upper < 0.5
    low, high = round(100 * (1 - v.upper)), round(100 * (1 - v.lower))
    assert v.text == f"support-lora beats base (win rate 75%, 95% CI [{low}%, {high}%], 40 votes)"
    # Independently: Wilson score interval for 30 of 40, [0.598, 0.858].
    p, n, z = 0.75, 40, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert 1 - v.upper == pytest.approx(centre - half, abs=0.04)
    assert 1 - v.lower == pytest.approx(centre + half, abs=0.04)
    # Asking the other way round gives the same verdict.
    flipped = pair_verdict(outcomes, "support-lora", "base")
    assert (flipped.win_rate, flipped.winner) == (0.75, "support-lora")


def test_bootstrap_interval_agrees_with_the_normal_approximation() -> None:
    outcomes = votes("x", "y", a=130, b=90, tie=30)
    v = pair_verdict(outcomes, "x", "y", n_boot=4000)
    scores = np.array([1.0] * 130 + [0.0] * 90 + [0.5] * 30)
    se = scores.std() / math.sqrt(len(scores))
    assert v.win_rate == pytest.approx(scores.mean())
    assert v.lower == pytest.approx(scores.mean() - 1.96 * se, abs=0.01)
    assert v.upper == pytest.approx(scores.mean() + 1.96 * se, abs=0.01)


def test_undecided_verdict_estimates_the_votes_needed() -> None:
    outcomes = votes("base", "support-lora", a=11, b=9)
    v = pair_verdict(outcomes, "base", "support-lora")
    assert (v.is_decided, v.winner) == (False, None)
    assert v.lower < 0.5 < v.upper
    # s = sqrt(0.55 * 0.45) = 0.4975, d = 0.05: (1.96 * 0.4975 / 0.05)^2 = 380.3 -> 381 in all.
    assert v.more_votes_needed == 381 - 20
    low, high = round(100 * v.lower), round(100 * v.upper)
    assert v.text == (
        f"base vs support-lora: not yet decided (win rate 55%, 95% CI [{low}%, {high}%], "
        "20 votes); about 361 more votes would likely settle it"
    )


def test_votes_needed_counts_ties_as_half() -> None:
    # 6 wins, 4 ties, 2 losses: p = 8/12, d = 1/6; per-vote scores 1, 0.5, 0 give
    # s^2 = (6 (1/3)^2 + 4 (1/6)^2 + 2 (2/3)^2) / 12 = 5/36; (1.96 s / d)^2 = 19.21 -> 20.
    v = pair_verdict(votes("x", "y", a=6, tie=4, b=2), "x", "y")
    assert not v.is_decided
    assert v.more_votes_needed == 20 - 12


def test_exactly_even_is_said_plainly() -> None:
    for outcomes in (votes("x", "y", a=10, b=10), votes("x", "y", tie=6, both_bad=5)):
        v = pair_verdict(outcomes, "x", "y")
        assert (v.win_rate, v.is_decided, v.more_votes_needed) == (0.5, False, None)
        assert v.text.endswith("the two look even so far; no number of votes can be promised")


def test_few_votes_never_decide_and_wording_is_singular_for_one() -> None:
    one = pair_verdict(votes("x", "y", a=1), "x", "y")
    assert not one.is_decided
    assert one.text == (
        "x vs y: not yet decided (win rate 100%, 95% CI [100%, 100%], 1 vote); "
        f"about {MIN_VOTES - 1} more votes would likely settle it"
    )
    almost = pair_verdict(votes("x", "y", a=MIN_VOTES - 1), "x", "y")
    assert almost.more_votes_needed == 1
    assert almost.text.endswith("; about 1 more vote would likely settle it")
    assert pair_verdict(votes("x", "y", a=MIN_VOTES), "x", "y").winner == "x"
    assert pair_verdict(votes("x", "y", a=3), "x", "y", min_votes=3).is_decided


def test_no_votes_yet() -> None:
    v = pair_verdict(votes("x", "z", a=3), "x", "y")
    assert (v.n, v.win_rate, v.is_decided, v.more_votes_needed) == (0, None, False, None)
    assert v.text == "x vs y: no votes yet"
    with pytest.raises(ValidationError):
        pair_verdict([], "x", "x")


def test_verdicts_cover_every_pair_and_ignore_seats() -> None:
    outcomes = random_outcomes(7, ["base", "alpha", "beta"], 90)
    result = verdicts(outcomes, n_boot=200)
    assert [(v.model_1, v.model_2) for v in result] == [
        ("alpha", "base"),
        ("alpha", "beta"),
        ("base", "beta"),
    ]
    assert result[0] == pair_verdict(outcomes, "alpha", "base", n_boot=200)
    swapped = [Outcome(o.model_b, o.model_a, SWAP[o.choice]) for o in outcomes]
    assert verdicts(swapped, n_boot=200) == result


def test_the_choices_are_what_the_database_accepts(db) -> None:
    """The statistics know every vote the votes table can hold, and nothing else."""
    db["battles"].insert({"model_a": "x", "model_b": "y", "conversation_a_json": "[]",
                          "conversation_b_json": "[]", "sampling_json": "{}",
                          "created_at": "t", "created_by": "t"})  # fmt: skip
    for number, choice in enumerate(CHOICES):
        db["votes"].insert({"battle_id": 1, "reviewer": f"r{number}", "choice": choice,
                            "created_at": "t"})  # fmt: skip
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db["votes"].insert({"battle_id": 1, "reviewer": "odd", "choice": "left",
                            "created_at": "t"})  # fmt: skip
    assert sorted(row["choice"] for row in db["votes"].rows) == sorted(CHOICES)
    # And the other way round: the table's CHECK allows exactly the choices the statistics know.
    (schema,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'votes'").fetchone()
    allowed = re.search(r"choice IN \(([^)]*)\)", schema).group(1)
    assert sorted(re.findall(r"'([^']*)'", allowed)) == sorted(CHOICES)
