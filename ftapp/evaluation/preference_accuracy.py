"""Preference accuracy: did a contestant learn the reviewers' preference? On an evaluation run
whose examples are a preference version's pairs, each contestant (the base model included)
scores both answers of every held-out pair with its own log-probabilities (the serving
backend's `answer_likelihood`: the answer's tokens given the chat-templated prompt, the
contestant's system prompt applied): 1 when the chosen answer is the likelier, else 0 (a tie
is 0), and the margin (chosen minus rejected, in nats). The report averages them per
contestant with a bootstrap interval; 0.5 is chance.

The pairs come with the run's examples (`version_pairs`, in the order of the split's prompts)
and are kept with them; scoring happens with the rest of the run's scoring (runs.score_run),
in the answer queue's thread, never in a web request.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from ftapp.data.formats import split_prompt
from ftapp.data.versions import resolve_version
from ftapp.errors import FtappError, ValidationError
from ftapp.generation.chat import with_system_prompt
from ftapp.records import Contestant, DatasetKind, EvalRun
from ftapp.serving.backend import AnswerScore
from ftapp.store import datasets as dataset_store
from ftapp.store import versions as version_store

METRIC = "preference_accuracy"
MARGIN = "preference_margin"  # stored beside it: chosen minus rejected log-probability
CHANCE = 0.5
WORKERS = 4  # answers scored at once (vLLM batches them; the in-process backend queues them)

# How likely a model ("base" or a variant) finds an answer's turns after a prompt
# (Services.answer_likelihood).
AnswerLikelihood = Callable[[str, list[dict[str, str]], list[dict[str, str]]], AnswerScore]


@dataclass(frozen=True)
class PairScore:
    chosen: float  # log-probability of the chosen answer
    rejected: float

    @property
    def accuracy(self) -> float:
        return 1.0 if self.chosen > self.rejected else 0.0

    @property
    def margin(self) -> float:
        return self.chosen - self.rejected

    def detail(self) -> str:
        return (f"log-probability chosen {self.chosen:.2f}, rejected {self.rejected:.2f} "
                f"(margin {self.margin:+.2f})")  # fmt: skip


def version_pairs(
    db: sqlite_utils.Database, reference: str, split: str = "test"
) -> list[dict[str, Any] | None] | None:
    """The pairs of one split of a frozen version, one per example in the order its prompts
    come (arena.prompts.prompts_from_version): {"chosen": turns, "rejected": turns}, or None
    for an answer labelled good or bad. None when the version is not preference data."""
    version = resolve_version(db, reference)
    if dataset_store.get_dataset(db, version.dataset).kind != DatasetKind.PREFERENCE:
        return None
    pairs: list[dict[str, Any] | None] = []
    for row in version_store.version_rows(db, version.id, split):
        if row["rejected"] is None:
            pairs.append(None)
            continue
        _, chosen = split_prompt(row["messages"])
        pairs.append({"chosen": chosen, "rejected": row["rejected"]})
    return pairs


def offers_preference_accuracy(
    db: sqlite_utils.Database, reference: str | None, split: str | None
) -> bool:
    """Whether examples from this version's split can be scored for preference accuracy: a
    preference version with pairs in the split. False for anything that isn't a version."""
    if not reference or not split:
        return False
    try:
        version = resolve_version(db, reference)
        if dataset_store.get_dataset(db, version.dataset).kind != DatasetKind.PREFERENCE:
            return False
        return version_store.count_pairs(db, version.id, split) > 0
    except FtappError:
        return False


def check_pairs(pairs: list[dict[str, Any] | None] | None, n_examples: int, source: str) -> None:
    """Refuse preference accuracy on examples without pairs, naming the source."""
    if pairs is None or not any(pairs):
        raise ValidationError(
            f"metric {METRIC}: {source} has no preference pairs (chosen and rejected answers); "
            "choose the split of a preference version that has pairs, or leave the metric out"
        )
    if len(pairs) != n_examples:
        raise ValueError(f"{len(pairs)} pairs for {n_examples} examples")


def score_preferences(
    run: EvalRun,
    done: list[dict[str, Any]],
    examples: dict[int, dict[str, Any]],
    logprob: AnswerLikelihood,
    workers: int = WORKERS,
) -> tuple[dict[int, PairScore], list[str]]:
    """Each done answer's pair scored by its contestant: answer id -> PairScore, and the
    reasons of the pairs the backend could not score (left out, not counted as 0)."""
    contestants = {c.name: c for c in run.contestants}
    todo = [a for a in done if examples[a["example_id"]].get("pair")]

    def score_one(answer: dict[str, Any]) -> PairScore | str:
        example = examples[answer["example_id"]]
        return score_pair(contestants[answer["contestant"]], example["messages"],
                          example["pair"], logprob)  # fmt: skip

    scores: dict[int, PairScore] = {}
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ftapp-logprob") as pool:
        for answer, result in zip(todo, pool.map(score_one, todo), strict=True):
            if isinstance(result, str):
                errors.append(result)
            else:
                scores[answer["id"]] = result
    return scores, errors


def score_pair(
    contestant: Contestant,
    prompt: list[dict[str, str]],
    pair: dict[str, Any],
    logprob: AnswerLikelihood,
) -> PairScore | str:
    """Both answers of a pair scored by the contestant's model, with its system prompt; the
    reason as text when the backend could not."""
    messages = with_system_prompt(contestant, prompt)
    try:
        return PairScore(logprob(contestant.model, messages, pair["chosen"]).logprob,
                         logprob(contestant.model, messages, pair["rejected"]).logprob)  # fmt: skip
    except FtappError as exc:
        return str(exc)
