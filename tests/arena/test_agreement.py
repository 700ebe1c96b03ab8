"""Position bias, Cohen's and Fleiss' kappa, reviewer agreement: hand-worked cases and
independent implementations (scipy, scikit-learn, statsmodels)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats import inter_rater

from ftapp.arena.agreement import (
    Judgement,
    PositionBias,
    ReviewerCount,
    ReviewerPair,
    cohen_kappa,
    fleiss_kappa,
    position_bias,
    reviewer_agreement,
    reviewer_counts,
)
from ftapp.arena.ratings import CHOICES, Outcome
from ftapp.errors import ValidationError

# The Wikipedia example for Fleiss' kappa: 10 items, 14 raters each, 5 categories.
WIKIPEDIA_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def outcomes_with(**counts: int) -> list[Outcome]:
    return [Outcome("lora", "base", c) for c, n in counts.items() for _ in range(n)]


# --- position bias -----------------------------------------------------------------------


def test_position_bias_by_hand_and_against_binomtest() -> None:
    # Ties and "both bad" are not decisive: 7 left wins of 10 decisive votes.
    bias = position_bias(outcomes_with(a=7, b=3, tie=4, both_bad=2))
    ci = binomtest(7, 10).proportion_ci()
    assert bias == PositionBias(10, 7, 0.7, ci.low, ci.high)
    # Clopper-Pearson for 7 of 10: [0.3475, 0.9333].
    assert (bias.lower, bias.upper) == pytest.approx((0.3475, 0.9333), abs=1e-4)
    assert bias.text == (
        "left side won 70% of 10 decisive votes (95% CI [35%, 93%]): no sign of position bias"
    )


def test_position_bias_texts() -> None:
    left = position_bias(outcomes_with(a=80, b=40))
    assert left.text.endswith(": reviewers favour the left side")
    assert left.text.startswith("left side won 67% of 120 decisive votes (95% CI [")
    right = position_bias(outcomes_with(a=10, b=30))
    assert right.text.endswith(": reviewers favour the right side")
    assert position_bias(outcomes_with(b=1)).text.startswith("left side won 0% of 1 decisive vote ")
    none = position_bias(outcomes_with(tie=3))
    assert none == PositionBias(0, 0, None, None, None)
    assert none.text == "no decisive votes yet: position bias can't be judged"


# --- Cohen's kappa -----------------------------------------------------------------------


def test_cohen_kappa_by_hand() -> None:
    # 50 items: both "a" 20, a/b 5, b/a 10, both "b" 15.
    # Observed agreement p_o = 35/50 = 0.7; rater 1 says "a" 25/50, rater 2 30/50, so chance
    # agreement p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    pairs = [("a", "a")] * 20 + [("a", "b")] * 5 + [("b", "a")] * 10 + [("b", "b")] * 15
    labels_1, labels_2 = zip(*pairs, strict=True)
    assert cohen_kappa(labels_1, labels_2) == pytest.approx(0.4)


@pytest.mark.parametrize("seed", range(6))
def test_cohen_kappa_matches_scikit_learn(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(5, 80)
    labels_1 = [rng.choice(CHOICES) for _ in range(n)]
    # Agree some of the time so that kappa isn't always near zero.
    labels_2 = [x if rng.random() < 0.5 else rng.choice(CHOICES) for x in labels_1]
    assert cohen_kappa(labels_1, labels_2) == pytest.approx(cohen_kappa_score(labels_1, labels_2))


def test_cohen_kappa_undefined_and_edge_cases() -> None:
    assert cohen_kappa([], []) is None
    assert cohen_kappa(["tie"] * 5, ["tie"] * 5) is None
    # One rater constant, the other not: chance agreement equals observed agreement -> 0.
    assert cohen_kappa(["a"] * 4, ["a", "b", "a", "tie"]) == 0.0
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    with pytest.raises(ValidationError, match="same items"):
        cohen_kappa(["a", "b"], ["a"])


# --- Fleiss' kappa -----------------------------------------------------------------------


def test_fleiss_kappa_wikipedia_example() -> None:
    categories = ["1", "2", "3", "4", "5"]
    ratings = {
        item: [c for c, count in zip(categories, row, strict=True) for _ in range(count)]
        for item, row in enumerate(WIKIPEDIA_TABLE)
    }
    assert fleiss_kappa(ratings, categories) == pytest.approx(0.210, abs=5e-4)
    assert fleiss_kappa(ratings, categories) == pytest.approx(
        inter_rater.fleiss_kappa(np.array(WIKIPEDIA_TABLE))
    )


@pytest.mark.parametrize("seed", range(4))
def test_fleiss_kappa_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items, n_raters = int(rng.integers(5, 40)), int(rng.integers(2, 6))
    truth = rng.integers(0, len(CHOICES), n_items)
    noise = rng.integers(0, len(CHOICES), (n_items, n_raters))
    codes = np.where(rng.random((n_items, n_raters)) < 0.6, truth[:, None], noise)
    ratings = {item: [CHOICES[c] for c in row] for item, row in enumerate(codes)}
    table, _ = inter_rater.aggregate_raters(codes)
    assert fleiss_kappa(ratings) == pytest.approx(inter_rater.fleiss_kappa(table))


def test_fleiss_kappa_with_unequal_raters_by_hand() -> None:
    ratings = {
        "one": ["a", "a", "a"],  # P = (9 - 3) / (3 * 2) = 1
        "two": ["a", "b"],  # P = (1 + 1 - 2) / (2 * 1) = 0
        "three": ["b", "b", "b", "tie"],  # P = (9 + 1 - 4) / (4 * 3) = 0.5
        "alone": ["tie"],  # one rater: ignored
    }
    # Mean P = 0.5. Ratings of the three items: a 4, b 4, tie 1 of 9, so P_e = 33/81;
    # kappa = (0.5 - 33/81) / (1 - 33/81) = 7.5 / 48 = 0.15625.
    assert fleiss_kappa(ratings) == pytest.approx(0.15625)


def test_fleiss_kappa_undefined_and_bad_labels() -> None:
    assert fleiss_kappa({}) is None
    assert fleiss_kappa({1: ["a"], 2: ["b"]}) is None
    assert fleiss_kappa({1: ["a", "a"], 2: ["a", "a", "a"]}) is None
    with pytest.raises(ValidationError, match="'left'"):
        fleiss_kappa({1: ["a", "left"]})


# --- reviewers ---------------------------------------------------------------------------


def test_judgement_rejects_unknown_labels() -> None:
    with pytest.raises(ValidationError, match="'left' by rita"):
        Judgement(1, "rita", "left")


def test_reviewer_agreement_on_partly_shared_battles() -> None:
    rng = random.Random(0)
    truth = {item: rng.choice(CHOICES) for item in range(60)}
    rated_by = {"alice": range(0, 40), "bob": range(20, 60), "carol": range(30, 50)}
    labels = {
        (reviewer, item): truth[item] if rng.random() < 0.6 else rng.choice(CHOICES)
        for reviewer, items in rated_by.items()
        for item in items
    }
    judgements = [Judgement(item, reviewer, label) for (reviewer, item), label in labels.items()]
    pairs, overall = reviewer_agreement(judgements)
    assert [(p.reviewer_1, p.reviewer_2, p.n_shared) for p in pairs] == [
        ("alice", "bob", 20),
        ("alice", "carol", 10),
        ("bob", "carol", 20),
    ]
    for pair in pairs:
        shared = sorted(set(rated_by[pair.reviewer_1]) & set(rated_by[pair.reviewer_2]))
        labels_1 = [labels[pair.reviewer_1, item] for item in shared]
        labels_2 = [labels[pair.reviewer_2, item] for item in shared]
        assert pair.kappa == pytest.approx(cohen_kappa_score(labels_1, labels_2))
        same = sum(x == y for x, y in zip(labels_1, labels_2, strict=True))
        assert pair.percent_agreement == pytest.approx(same / len(shared))
    by_item: dict[int, list[str]] = {}
    for (_, item), label in labels.items():
        by_item.setdefault(item, []).append(label)
    assert overall == pytest.approx(fleiss_kappa(by_item))


def test_reviewer_agreement_with_everyone_on_every_battle_matches_statsmodels() -> None:
    rng = random.Random(1)
    judgements, codes = [], []
    for item in range(30):
        row = [rng.choice(CHOICES[:2]) if rng.random() < 0.7 else "tie" for _ in range(3)]
        codes.append([CHOICES.index(label) for label in row])
        judgements += [Judgement(item, r, label) for r, label in zip("xyz", row, strict=True)]
    _, overall = reviewer_agreement(judgements)
    table, _ = inter_rater.aggregate_raters(np.array(codes))
    assert overall == pytest.approx(inter_rater.fleiss_kappa(table))


def test_a_second_judgement_of_a_battle_replaces_the_first() -> None:
    judgements = [
        Judgement("b1", "rita", "a"),
        Judgement("b1", "sam", "b"),
        Judgement("b2", "rita", "tie"),
        Judgement("b2", "sam", "tie"),
        Judgement("b1", "rita", "b"),  # rita changed her mind
        Judgement("b3", "sam", "both_bad"),
    ]
    pairs, overall = reviewer_agreement(judgements)
    assert pairs == [ReviewerPair("rita", "sam", 2, 1.0, 1.0)]
    assert overall == pytest.approx(1.0)
    assert reviewer_counts(judgements) == [
        ReviewerCount("rita", 2, 0, 1, 1, 0),
        ReviewerCount("sam", 3, 0, 1, 1, 1),
    ]


def test_reviewers_without_shared_battles_have_no_pair() -> None:
    judgements = [Judgement(1, "rita", "a"), Judgement(2, "sam", "b")]
    assert reviewer_agreement(judgements) == ([], None)
    assert reviewer_agreement([]) == ([], None)
    assert reviewer_counts([]) == []
