"""Drift: how far a fine-tune moved away from its base model on everyday requests, the sign of
over-fine-tuning (catastrophic forgetting) that the task's own metrics can't show.

ftapp ships a general probe set (`probe_prompts.jsonl`: writing, reasoning, facts, code, chat,
instructions). The base model answers every probe once, greedy, in the background answer
queue (this module's work list, over `probe_answers`), and its own log-probability of each
answer is kept. A variant's drift on a probe is the per-token cross-entropy of the base
model's answer under the variant minus under the base model: an estimate of the KL divergence
of the variant from base along the base model's own behaviour, 0 for base itself, in nats per
token. A variant's drift is the mean over the probes with a 95% bootstrap interval. Every
adapter and checkpoint on the base model is measured once its probe answers are in, in the
answer queue's thread (the web app owns the serving backend); `ftapp eval drift` does the same
from a terminal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from ftapp.errors import FtappError
from ftapp.evaluation.report import Estimate, estimate
from ftapp.generation import queue
from ftapp.generation.chat import OpenDb
from ftapp.names import BASE
from ftapp.serving.backend import AnswerScore, Sampling
from ftapp.store import drift as store
from ftapp.store.answers import PROBE_ANSWERS_TABLE, answer_counts

log = logging.getLogger(__name__)

PROBES_FILE = Path(__file__).with_name("probe_prompts.jsonl")
# Greedy and short: the probes ask for one to three sentences, and the measure is about the
# base model's most likely answer, not a sample of it.
PROBE_SAMPLING = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=64, seed=0)

# How likely a model ("base" or a variant's name) finds an answer (Services.answer_likelihood).
Likelihood = Callable[[str, list[dict[str, str]], list[dict[str, str]]], AnswerScore]


@dataclass(frozen=True)
class Drift:
    variant: str
    status: str  # "done" or "failed"
    value: Estimate  # nats per token, mean over probes with its 95% interval
    error: str | None = None
    per_probe: tuple[float, ...] = ()  # in the order of the probes measured


def load_probes(limit: int | None = None) -> list[tuple[list[dict[str, str]], str]]:
    """The shipped probes as (messages, category), the first `limit` of each category in turn
    when limited, so a short set still covers every kind of request."""
    rows = [json.loads(line) for line in PROBES_FILE.read_text(encoding="utf-8").splitlines()]
    by_category: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_category.setdefault(row["category"], []).append(row)
    ordered = [row for group in zip(*by_category.values(), strict=False) for row in group]
    chosen = ordered[:limit] if limit else ordered
    return [([{"role": "user", "content": row["prompt"]}], row["category"]) for row in chosen]


def ensure_probe_set(db: sqlite_utils.Database, base_model: str, n_probes: int) -> int | None:
    """The base model's probe set, made (its answers pending) the first time a variant of the
    base model exists; None while none does, or with drift turned off (n_probes 0)."""
    found = store.find_probe_set(db, base_model)
    if found:
        return found["id"]
    if not n_probes or not store.has_variants(db, base_model):
        return None
    contestants = [{"name": BASE, "model": BASE, "system_prompt": ""}]
    return store.insert_probe_set(db, base_model, load_probes(n_probes), contestants,
                                  asdict(PROBE_SAMPLING))  # fmt: skip


def drift_work_list(base_model: str, n_probes: int, likelihood: Likelihood) -> queue.WorkList:
    """The probe answers' work list for the answer queue: the base model's set is made when
    its first variant exists, its answers generated like any other, then every variant without
    a drift is measured with `likelihood` (Services.answer_likelihood)."""

    def waiting(db: sqlite_utils.Database) -> list[int]:
        set_id = ensure_probe_set(db, base_model, n_probes)
        if set_id is None:
            return []
        found = store.find_probe_set(db, base_model)
        if found["status"] == "generating" or store.variants_to_measure(db, set_id, base_model):
            return [set_id]
        return []

    return queue.WorkList(
        name="probe answer",
        table=PROBE_ANSWERS_TABLE,
        waiting_groups=waiting,
        complete=lambda open_db, set_id: measure_drift(open_db, set_id, likelihood),
    )


def measure_drift(open_db: OpenDb, set_id: int, likelihood: Likelihood) -> None:
    """Once the base model's probe answers are in: their likelihood under base (once), then
    every variant of the base model not measured yet. A crash leaves what is saved; the rest
    is measured at the next pass."""
    with open_db() as db:
        counts = answer_counts(db, PROBE_ANSWERS_TABLE, set_id)
        if counts.get("pending") or counts.get("running"):
            return
        probe_set = next(s for s in store.probe_sets(db) if s["id"] == set_id)
        if probe_set["status"] == "generating":
            store.set_probe_status(db, set_id, "ready" if counts.get("done") else "failed")
        answers = [a for a in store.probe_answers(db, set_id) if a["status"] == "done"]
    for answer in answers:
        if answer["logprob"] is None:
            score = _likelihood(likelihood, BASE, answer)
            if score is not None:
                with open_db() as db:
                    store.save_base_likelihood(db, answer["id"], score.logprob, score.tokens)
                answer.update(logprob=score.logprob, tokens=score.tokens)
    with open_db() as db:
        variants = store.variants_to_measure(db, set_id, probe_set["base_model"])
    for variant in variants:
        drift = variant_drift(variant["name"], answers, likelihood)
        with open_db() as db:
            store.save_drift(db, {
                "variant": variant["name"], "adapter_path": variant["path"], "set_id": set_id,
                "status": drift.status, "mean": drift.value.mean, "low": drift.value.low,
                "high": drift.value.high, "n": drift.value.n, "error": drift.error,
                "values_json": json.dumps(drift.per_probe) if drift.per_probe else None,
            })  # fmt: skip
        log.info("drift of %s: %s", variant["name"], drift.value)


def variant_drift(variant: str, answers: list[dict[str, Any]], likelihood: Likelihood) -> Drift:
    """The variant's drift over the probe answers that have the base model's likelihood: per
    probe, (log p_base - log p_variant) / tokens of the base model's answer."""
    values, errors = [], []
    for answer in answers:
        if answer["logprob"] is None or not answer["tokens"]:
            continue
        try:
            score = likelihood(variant, answer["messages"], _turns(answer))
        except FtappError as exc:
            errors.append(str(exc))
            continue
        values.append((answer["logprob"] - score.logprob) / answer["tokens"])
    if not values:
        reason = errors[0] if errors else "no probe answer of the base model to measure on"
        return Drift(variant, "failed", Estimate(None, None, None, 0), reason)
    return Drift(variant, "done", estimate(values), None, tuple(values))


def drift_table(db: sqlite_utils.Database) -> dict[str, Drift]:
    """Every measured variant's drift, by name."""
    return {
        name: Drift(name, row["status"], Estimate(row["mean"], row["low"], row["high"], row["n"]),
                    row["error"])
        for name, row in store.all_drift(db).items()
    }  # fmt: skip


def _likelihood(likelihood: Likelihood, model: str, answer: dict[str, Any]) -> AnswerScore | None:
    try:
        return likelihood(model, answer["messages"], _turns(answer))
    except FtappError as exc:  # an empty answer, an engine down: this probe is left out
        log.warning("probe %s not scored under %s: %s", answer["position"], model, exc)
        return None


def _turns(answer: dict[str, Any]) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": answer["answer"] or ""}]
