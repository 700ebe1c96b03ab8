"""From reviewers' votes to preference data: which battles give a pair (for DPO and ORPO),
which give unpaired bad answers (for KTO), and which give nothing, by rules stated once here
and shown to the admin before anything is written.

The rules, battle by battle (a session's battles, or every battle, free ones included):
- the votes are counted per choice; the choice with the most votes decides. When reviewers
  disagree the majority decides ("majority", e.g. 2-1); when the top choices are even the
  battle is dropped ("split", e.g. 1-1);
- a decided win gives one pair: the winner's answer chosen, the loser's rejected ("win");
- a decided tie gives nothing ("tie");
- a decided "both bad" gives two unpaired rows labelled bad, one per answer, never a pair
  ("both bad");
- a battle whose two answers are the same, or that failed, gives nothing.
Each row keeps the battle it came from. The prompt is what both sides saw before the first
answer; a contestant's hidden system prompt is not part of it: the point is to teach a model
to answer well without one.

`votes_to_dataset` turns them into a new preference dataset in one step, through the normal
importer (so every row is checked like an uploaded one), accepted, split and frozen
(ftapp/data/from_rows.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlite_utils

from ftapp.data.from_rows import dataset_from_rows
from ftapp.data.importer import TokenCounter
from ftapp.errors import Conflict, ValidationError
from ftapp.records import Battle, DatasetVersion, Vote, VoteChoice
from ftapp.store import arena as store
from ftapp.store import datasets as dataset_store

# The reasons a battle counts as it does, in the order the page lists them.
RULES = ("win", "majority", "tie", "both bad", "split", "same answers", "failed")


@dataclass(frozen=True)
class PreferencePair:
    battle_id: int
    prompt: list[dict[str, str]]
    chosen: list[dict[str, str]]
    rejected: list[dict[str, str]]


@dataclass(frozen=True)
class LabelledAnswer:
    """An unpaired row for KTO: one answer to the prompt, good or bad."""

    battle_id: int
    prompt: list[dict[str, str]]
    answer: list[dict[str, str]]
    is_good: bool


@dataclass(frozen=True)
class PreferencesFromVotes:
    pairs: list[PreferencePair]
    labelled: list[LabelledAnswer]
    # How many battles each rule applied to ("majority" counts the wins and both-bads that
    # a majority decided, on top of their own rule); every rule is listed, zeros too.
    counts: dict[str, int] = field(default_factory=dict)


def preferences_from_votes(
    db: sqlite_utils.Database, session_id: int | None = None
) -> PreferencesFromVotes:
    """The preference rows the votes give (one session's, or all), by the module's rules."""
    votes: dict[int, list[Vote]] = defaultdict(list)
    battles: dict[int, Battle] = {}
    for battle, vote in store.voted_battles(db, session_id):
        battles[battle.id] = battle
        votes[battle.id].append(vote)
    return decide([(battles[i], votes[i]) for i in sorted(battles)])


def decide(voted: list[tuple[Battle, list[Vote]]]) -> PreferencesFromVotes:
    """The rows of battles with their votes, by the module's rules."""
    counts = dict.fromkeys(RULES, 0)
    pairs: list[PreferencePair] = []
    labelled: list[LabelledAnswer] = []
    for battle, battle_votes in voted:
        rule, choice = _decision(battle, battle_votes)
        counts[rule] += 1
        if rule == "split" or choice is None:
            continue
        if len({v.choice for v in battle_votes}) > 1:
            counts["majority"] += 1
        prompt = battle.prompt
        answer_a = battle.conversation_a[len(prompt) :]
        answer_b = battle.conversation_b[len(prompt) :]
        if choice in (VoteChoice.A, VoteChoice.B):
            chosen, rejected = answer_a, answer_b
            if choice == VoteChoice.B:
                chosen, rejected = rejected, chosen
            pairs.append(PreferencePair(battle.id, prompt, chosen, rejected))
        elif choice == VoteChoice.BOTH_BAD:
            labelled += [LabelledAnswer(battle.id, prompt, answer, False)
                         for answer in (answer_a, answer_b)]  # fmt: skip
    return PreferencesFromVotes(pairs, labelled, counts)


def _decision(battle: Battle, votes: list[Vote]) -> tuple[str, VoteChoice | None]:
    """The rule a battle falls under, and the choice that decided it (None: no row)."""
    if battle.status != "ready":
        return "failed", None
    tally = Counter(VoteChoice(v.choice) for v in votes).most_common()
    if len(tally) > 1 and tally[0][1] == tally[1][1]:
        return "split", None
    choice = tally[0][0]
    prompt = battle.prompt
    if battle.conversation_a[len(prompt) :] == battle.conversation_b[len(prompt) :]:
        return "same answers", None
    rule = {VoteChoice.A: "win", VoteChoice.B: "win", VoteChoice.TIE: "tie",
            VoteChoice.BOTH_BAD: "both bad"}[choice]  # fmt: skip
    return rule, None if rule == "tie" else choice


def rules_text(counts: dict[str, int]) -> str:
    """The battles per rule, for the page and the terminal, before anything is written."""
    shown = ", ".join(f"{rule}: {counts.get(rule, 0)}" for rule in RULES)
    return f"battles per rule: {shown}"


def votes_to_dataset(
    db: sqlite_utils.Database,
    dataset: str,
    *,
    session: str | None,
    user: str,
    count_tokens: TokenCounter,
    max_tokens: int,
    ratios: Sequence[float | str] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[DatasetVersion, PreferencesFromVotes]:
    """A new preference dataset from the votes (one session's, or all), its rows accepted and
    split and frozen as v1; its description states the rules and the counts. Nothing is left
    behind when a step fails."""
    name = dataset_store.check_dataset_name(dataset)
    if dataset_store.find_dataset(db, name):
        raise Conflict(f"a dataset named {name!r} exists; votes go into a new dataset")
    session_id = store.get_session(db, session).id if session else None
    found = preferences_from_votes(db, session_id)
    if not found.pairs and not found.labelled:
        raise ValidationError(f"no vote gives a preference row yet ({rules_text(found.counts)})")
    pairs = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected,
              "battle_id": p.battle_id} for p in found.pairs]  # fmt: skip
    unpaired = [{"prompt": r.prompt, "completion": r.answer, "label": r.is_good,
                 "battle_id": r.battle_id} for r in found.labelled]  # fmt: skip
    where = f"session {session!r}" if session else "all battles"
    # As files named for what they hold: the dataset's import history says where rows came from.
    version = dataset_from_rows(
        db, name, {"arena-pairs.jsonl": pairs, "arena-bad-answers.jsonl": unpaired},
        description=f"Reviewers' votes of {where}. {RULES_NOTE} {rules_text(found.counts)}.",
        user=user, count_tokens=count_tokens, max_tokens=max_tokens, ratios=ratios, seed=seed,
        note=f"from the votes of {where}",
    )  # fmt: skip
    return version, found


RULES_NOTE = (
    "A win decided by the majority of a battle's reviewers gives a pair; a tie or an even split "
    "gives nothing; 'both bad' gives its two answers as unpaired rows labelled bad."
)
