"""The leaderboard: everything the votes say, for one session or for all battles (sessions
and free battles together): the plain ratings and verdicts, and beside them the ratings once
the answers' length and formatting are controlled for (style.py). The Leaderboard tab and
`ftapp arena leaderboard` both show `leaderboard(...)`, so the browser and the terminal give
the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

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
from ftapp.arena.reviewers import ReviewerQuality, VoteRecord, reviewer_quality, trusted
from ftapp.arena.style import StyleControl, StyledVote, style_control, style_counts
from ftapp.records import Battle, Vote
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
    style: StyleControl | None = None  # None: not asked for, or nothing to control for
    # Each reviewer checked (reviewers.py): accuracy on check battles, agreement, flags.
    quality: list[ReviewerQuality] = field(default_factory=list)
    # Where the session sets a minimum accuracy on checks: the ratings without the votes of
    # the reviewers below it (`dropped`), shown beside the ratings with every vote.
    min_accuracy: float | None = None
    trusted_ratings: list[Rating] | None = None
    dropped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["position_bias"]["text"] = self.position_bias.text
        for pair, stats in zip(data["pairs"], self.pairs, strict=True):
            pair["win_rate_1"] = stats.win_rate_1
        if self.style is not None:
            for effect, styled in zip(data["style"]["effects"], self.style.effects, strict=True):
                effect["text"] = styled.text
        return data


def leaderboard(
    db: sqlite_utils.Database,
    session: str | None = None,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    count_tokens: Callable[[list[str]], list[int]] | None = None,
) -> Leaderboard:
    """The numbers of one session (by name), or of every vote when `session` is None; with
    `count_tokens` (the base model's tokenizer) the style-controlled ratings too. Bootstrap
    intervals are seeded: the same votes give the same table."""
    target = store.get_session(db, session) if session else None
    session_id = target.id if target else None
    voted = store.voted_battles(db, session_id)
    outcomes = [Outcome(b.model_a, b.model_b, v.choice.value) for b, v in voted]
    quality = reviewer_quality(vote_records(db, session_id))
    min_accuracy = target.min_gold_accuracy if target else None
    trusted_ratings, dropped = None, []
    if min_accuracy is not None:
        keep, left_out = trusted(quality, min_accuracy)
        dropped = sorted(q.reviewer for q in left_out)
        kept = [Outcome(b.model_a, b.model_b, v.choice.value) for b, v in voted
                if v.reviewer in keep]  # fmt: skip
        trusted_ratings = rating_table(kept, n_boot=n_boot, seed=seed)
    judgements = [Judgement(b.id, v.reviewer, v.choice.value) for b, v in voted]
    models, matrix = win_rate_matrix(outcomes)
    pairs, fleiss = reviewer_agreement(judgements)
    ratings = rating_table(outcomes, n_boot=n_boot, seed=seed)
    style = None
    if count_tokens is not None:
        styled = styled_votes(voted, count_tokens)
        style = style_control(styled, n_boot=n_boot // 5, seed=seed, raw=ratings)
    return Leaderboard(
        scope=f"session {session}" if session else "all battles",
        n_votes=len(voted),
        n_battles_voted=len({b.id for b, _ in voted}),
        ratings=ratings,
        pairs=pair_stats(outcomes),
        verdicts=verdicts(outcomes, n_boot=n_boot, seed=seed),
        matrix_models=models,
        matrix=matrix,
        position_bias=position_bias(outcomes),
        reviewers=reviewer_counts(judgements),
        reviewer_pairs=pairs,
        fleiss_kappa=fleiss,
        style=style,
        quality=quality,
        min_accuracy=min_accuracy,
        trusted_ratings=trusted_ratings,
        dropped=dropped,
    )


def vote_records(db: sqlite_utils.Database, session_id: int | None) -> list[VoteRecord]:
    """Every vote of the scope, check battles included, as reviewers.py reads it: the known
    better side, the seconds it took, the words there were to read."""
    seconds = store.vote_times(db, session_id)
    return [
        VoteRecord(battle.id, vote.reviewer, vote.choice.value, battle.gold_choice,
                   seconds.get((battle.id, vote.reviewer)),
                   len(_answers(battle.conversation_a).split())
                   + len(_answers(battle.conversation_b).split()))
        for battle, vote in store.voted_battles(db, session_id, include_checks=True)
    ]  # fmt: skip


def styled_votes(
    voted: list[tuple[Battle, Vote]], count_tokens: Callable[[list[str]], list[int]]
) -> list[StyledVote]:
    """Each vote with the style of the answers it judged (every assistant turn of a side)."""
    texts = [_answers(b.conversation_a) for b, _ in voted] + [
        _answers(b.conversation_b) for b, _ in voted]  # fmt: skip
    tokens = count_tokens(texts) if texts else []
    votes = []
    for i, (battle, vote) in enumerate(voted):
        a = style_counts(texts[i], tokens[i])
        b = style_counts(texts[len(voted) + i], tokens[len(voted) + i])
        votes.append(StyledVote(Outcome(battle.model_a, battle.model_b, vote.choice.value), a, b))
    return votes


def _answers(conversation: list[dict[str, str]]) -> str:
    return "\n\n".join(m["content"] for m in conversation if m["role"] == "assistant")
