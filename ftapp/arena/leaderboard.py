"""The leaderboard: everything the votes say, for one session or for all battles (sessions
and free battles together). The Leaderboard tab and `ftapp arena leaderboard` both show
`leaderboard(...)`, so the browser and the terminal give the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import sqlite_utils

from ftapp.arena.agreement import (
    Judgement,
    PositionBias,
    ReviewerCount,
    ReviewerPair,
    position_bias,
    reviewer_agreement,
    reviewer_counts,
)
from ftapp.arena.ratings import (
    Outcome,
    PairStats,
    Rating,
    Verdict,
    pair_stats,
    rating_table,
    verdicts,
    win_rate_matrix,
)
from ftapp.store import arena as store

N_BOOT = 1000


@dataclass(frozen=True)
class Leaderboard:
    scope: str  # "session NAME" or "all battles"
    n_votes: int
    n_battles_voted: int
    ratings: list[Rating]
    pairs: list[PairStats]
    verdicts: list[Verdict]
    matrix_models: list[str]
    matrix: list[list[float | None]]  # win rate of row against column
    position_bias: PositionBias
    reviewers: list[ReviewerCount]
    reviewer_pairs: list[ReviewerPair]  # Cohen's kappa per pair with shared battles
    fleiss_kappa: float | None  # over battles judged by two or more reviewers

    def to_dict(self) -> dict:
        data = asdict(self)
        data["position_bias"]["text"] = self.position_bias.text
        for pair, stats in zip(data["pairs"], self.pairs, strict=True):
            pair["win_rate_1"] = stats.win_rate_1
        return data


def leaderboard(
    db: sqlite_utils.Database, session: str | None = None, *, n_boot: int = N_BOOT, seed: int = 0
) -> Leaderboard:
    """The numbers of one session (by name), or of every vote when `session` is None.
    Bootstrap intervals are seeded: the same votes give the same table."""
    session_id = store.get_session(db, session).id if session else None
    voted = store.voted_battles(db, session_id)
    outcomes = [Outcome(b.model_a, b.model_b, v.choice.value) for b, v in voted]
    judgements = [Judgement(b.id, v.reviewer, v.choice.value) for b, v in voted]
    models, matrix = win_rate_matrix(outcomes)
    pairs, fleiss = reviewer_agreement(judgements)
    return Leaderboard(
        scope=f"session {session}" if session else "all battles",
        n_votes=len(voted),
        n_battles_voted=len({b.id for b, _ in voted}),
        ratings=rating_table(outcomes, n_boot=n_boot, seed=seed),
        pairs=pair_stats(outcomes),
        verdicts=verdicts(outcomes, n_boot=n_boot, seed=seed),
        matrix_models=models,
        matrix=matrix,
        position_bias=position_bias(outcomes),
        reviewers=reviewer_counts(judgements),
        reviewer_pairs=pairs,
        fleiss_kappa=fleiss,
    )
