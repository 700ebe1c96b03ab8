"""The report of an evaluation run: for every contestant and metric, the mean with a 95%
bootstrap interval and the difference to the baseline (paired: the same examples, resampled
together) with its interval and a plain verdict; the examples where a contestant gained or
lost the most against the baseline; any example side by side with its reference; and the
per-answer results as CSV or JSONL. Preference accuracy is also read against chance (0.5),
for every contestant, the baseline included: did the model learn the reviewers' preference.

Intervals are percentile bootstraps over examples (scipy.stats.bootstrap), seeded, so the
same run always gives the same report, in the app and in `ftapp eval report`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils
from scipy import stats

from ftapp.errors import NotFound, ValidationError
from ftapp.evaluation import metrics, preference_accuracy
from ftapp.evaluation.runs import prompt_text, run_progress
from ftapp.files import write_records
from ftapp.generation.progress import GenerationProgress
from ftapp.records import EvalRun, RunStatus
from ftapp.store import evaluation as store

N_BOOT = 2000
SEED = 0
N_EXAMPLES_SHOWN = 3  # best and worst examples per contestant
FORMATS = ("csv", "jsonl")
MEASURED = ("latency_ms", "tokens_per_second")  # measured while generating, on every run
# Lengths describe an answer; neither direction is better: the verdict says longer or shorter.
DESCRIPTIVE = ("chars", "words")


@dataclass(frozen=True)
class Estimate:
    mean: float | None
    low: float | None  # 95% bootstrap interval; None with fewer than two values
    high: float | None
    n: int


@dataclass(frozen=True)
class MetricRow:
    metric: str
    label: str
    contestant: str
    value: Estimate
    vs_baseline: Estimate | None  # contestant minus baseline on the same examples
    verdict: str  # "better", "worse", "no clear difference", or "" for the baseline
    # Preference accuracy only, for every contestant: "above chance", "below chance",
    # "no clear difference from chance" or "too few examples"; "" for other metrics.
    chance: str = ""


@dataclass(frozen=True)
class ExampleDelta:
    position: int
    prompt: str
    reference: str | None
    answer: str
    baseline_answer: str
    value: float
    baseline_value: float
    difference: float


@dataclass(frozen=True)
class RunReport:
    run: EvalRun
    progress: GenerationProgress
    metrics: list[str]  # in the report's order
    rows: list[MetricRow]
    failed: dict[str, int]  # contestant -> answers that could not be generated
    key_metric: str | None  # what best/worst examples are ranked by
    best: dict[str, list[ExampleDelta]] = field(default_factory=dict)
    worst: dict[str, list[ExampleDelta]] = field(default_factory=dict)

    def row(self, metric: str, contestant: str) -> MetricRow:
        return next(r for r in self.rows if r.metric == metric and r.contestant == contestant)

    def verdicts(self) -> dict[str, str]:
        """One line per contestant against the baseline, what the report opens with: "better
        on ROUGE-L, chrF; worse on exact match; 3 metrics without a clear difference". Lengths
        and speed describe an answer rather than judge it, and are left out."""
        lines = {}
        for contestant in (c.name for c in self.run.contestants[1:]):
            mine = [r for r in self.rows if r.contestant == contestant
                    and r.metric not in (*DESCRIPTIVE, *MEASURED)]  # fmt: skip
            better = [r.label for r in mine if r.verdict == "better"]
            worse = [r.label for r in mine if r.verdict == "worse"]
            unclear = sum(r.verdict not in ("better", "worse") for r in mine)
            parts = [f"better on {', '.join(better)}"] if better else []
            parts += [f"worse on {', '.join(worse)}"] if worse else []
            if unclear:
                parts.append(f"{unclear} metric{'s' if unclear > 1 else ''} without a clear "
                             "difference")  # fmt: skip
            lines[contestant] = "; ".join(parts) or "nothing scored yet"
        return lines

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["run"] = {"name": self.run.name, "status": self.run.status,
                       "source": self.run.source, "error": self.run.error,
                       "baseline": self.run.baseline.name,
                       "contestants": [c.name for c in self.run.contestants]}  # fmt: skip
        return data


def label_of(metric: str) -> str:
    if metric in metrics.METRICS:
        return metrics.METRICS[metric].label
    if metric == "judge":
        return "judge: win rate against the baseline"
    if metric == preference_accuracy.MARGIN:
        return "Preference margin (log-probability, chosen minus rejected)"
    return f"check: {metric}"


def higher_is_better(metric: str) -> bool:
    return metrics.METRICS[metric].higher_is_better if metric in metrics.METRICS else True


def run_metrics(run: EvalRun, answers: list[dict[str, Any]]) -> list[str]:
    """The metrics of a run, in order: the chosen ones, the measured ones, the checks, the
    judge; only those some answer has a value for."""
    chosen = [*run.checks.get("metrics", []), *MEASURED,
              *[c["name"] for c in run.checks.get("checks", [])], "judge"]  # fmt: skip
    if preference_accuracy.METRIC in chosen:  # its margin is stored with it
        at = chosen.index(preference_accuracy.METRIC) + 1
        chosen[at:at] = [preference_accuracy.MARGIN]
    scored = [a["scores"] for a in answers if a["scores"]]
    return [m for m in dict.fromkeys(chosen)
            if any(s.get(m) is not None for s in scored)]  # fmt: skip


def estimate(values: list[float], seed: int = SEED, n_boot: int = N_BOOT) -> Estimate:
    """The mean of `values` with a 95% percentile bootstrap interval."""
    if not values:
        return Estimate(None, None, None, 0)
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return Estimate(mean, None, None, 1)
    if np.all(data == data[0]):  # every resample is the same: the interval is the point
        return Estimate(mean, mean, mean, len(data))
    result = stats.bootstrap((data,), np.mean, n_resamples=n_boot, method="percentile",
                             confidence_level=0.95, rng=np.random.default_rng(seed))  # fmt: skip
    interval = result.confidence_interval
    return Estimate(mean, float(interval.low), float(interval.high), len(data))


def build_report(db: sqlite_utils.Database, name: str | int, n_boot: int = N_BOOT) -> RunReport:
    run = store.get_run(db, name)
    answers = store.run_answers(db, run.id)
    examples = {e["id"]: e for e in store.run_examples(db, run.id)}
    names = [c.name for c in run.contestants]
    failed = {n: sum(a["status"] == "failed" and a["contestant"] == n for a in answers)
              for n in names}  # fmt: skip
    chosen = run_metrics(run, answers)
    # metric -> contestant -> example id -> value
    table: dict[str, dict[str, dict[int, float]]] = {m: {n: {} for n in names} for m in chosen}
    for answer in answers:
        if answer["status"] != "done":  # a failed answer has nothing to score
            continue
        for metric in chosen:
            value = (answer["scores"] or {}).get(metric)
            if value is not None:
                table[metric][answer["contestant"]][answer["example_id"]] = float(value)
    baseline = run.baseline.name
    rows = []
    for metric in chosen:
        for contestant in names:
            values = table[metric][contestant]
            if metric == "judge":  # already a comparison with the baseline: 0.5 is a draw
                if contestant == baseline:
                    continue
                value = estimate(list(values.values()), n_boot=n_boot)
                rows.append(MetricRow(metric, label_of(metric), contestant, value, None,
                                      _verdict(value, 0.5, True)))  # fmt: skip
                continue
            value = estimate(list(values.values()), n_boot=n_boot)
            chance = _chance(value) if metric == preference_accuracy.METRIC else ""
            if contestant == baseline:
                rows.append(MetricRow(metric, label_of(metric), contestant, value, None, "",
                                      chance))  # fmt: skip
                continue
            shared = [e for e in values if e in table[metric][baseline]]
            difference = estimate([values[e] - table[metric][baseline][e] for e in shared],
                                  n_boot=n_boot)  # fmt: skip
            verdict = _verdict(difference, 0.0, higher_is_better(metric))
            if metric in DESCRIPTIVE:
                verdict = {"better": "shorter", "worse": "longer"}.get(verdict, verdict)
            rows.append(MetricRow(metric, label_of(metric), contestant, value, difference,
                                  verdict, chance))  # fmt: skip
    key = _key_metric(run, chosen)
    best, worst = {}, {}
    if key:
        for contestant in names[1:]:
            deltas = _deltas(run, key, contestant, table, answers, examples)
            best[contestant] = [d for d in deltas if d.difference > 0][:N_EXAMPLES_SHOWN]
            worst[contestant] = [d for d in reversed(deltas) if d.difference < 0][:N_EXAMPLES_SHOWN]
    return RunReport(run, run_progress(db, run.id), chosen, rows, failed, key, best, worst)


def _chance(value: Estimate) -> str:
    """Preference accuracy against a coin toss: is the interval above or below 0.5?"""
    verdict = _verdict(value, preference_accuracy.CHANCE, True)
    words = {"better": "above chance", "worse": "below chance",
             "no clear difference": "no clear difference from chance"}  # fmt: skip
    return words.get(verdict, verdict)


def _verdict(value: Estimate, neutral: float, higher_better: bool) -> str:
    if value.low is None or value.high is None:
        return "too few examples"
    if value.low > neutral or value.high < neutral:
        gained = value.low > neutral
        return "better" if gained == higher_better else "worse"
    return "no clear difference"


# What best and worst examples are ranked by, first found first: graded metrics before exact
# match, whose 0/1 on free-form answers is mostly 0 for everyone and ranks nothing.
KEY_METRICS = ("judge", "rouge_l", "chrf", "bleu", "exact_match", "regex", "json_valid")


def _key_metric(run: EvalRun, chosen: list[str]) -> str | None:
    """The metric best and worst examples are ranked by: the judge, else a reference metric
    (graded ones first), else the first check, else the first chosen score."""
    checks = [c["name"] for c in run.checks.get("checks", []) if c["name"] in chosen]
    scores = [m for m in chosen if m not in DESCRIPTIVE and m not in MEASURED]
    for candidates in ([m for m in KEY_METRICS if m in chosen], checks, scores):
        if candidates:
            return candidates[0]
    return None


def _deltas(run, key, contestant, table, answers, examples) -> list[ExampleDelta]:
    """The contestant's examples ranked by its gain over the baseline on `key`, best first."""
    baseline = run.baseline.name
    text = {(a["contestant"], a["example_id"]): a["answer"] or "" for a in answers}
    deltas = []
    for example_id, value in table[key][contestant].items():
        if key == "judge":
            base_value = 0.5  # the judge scores the pair: above a draw is a gain
        elif example_id in table[key][baseline]:
            base_value = table[key][baseline][example_id]
        else:
            continue
        sign = 1 if higher_is_better(key) else -1
        example = examples[example_id]
        deltas.append(ExampleDelta(
            example["position"], prompt_text(example["messages"]), example["reference"],
            text[(contestant, example_id)], text.get((baseline, example_id), ""),
            value, base_value, sign * (value - base_value),
        ))  # fmt: skip
    return sorted(deltas, key=lambda d: (-d.difference, d.position))


def example_detail(db: sqlite_utils.Database, name: str | int, position: int) -> dict[str, Any]:
    """One example side by side: its prompt, its reference, and every contestant's answer
    with its scores, check details and judge verdicts."""
    run = store.get_run(db, name)
    example = next((e for e in store.run_examples(db, run.id) if e["position"] == position), None)
    if example is None:
        raise NotFound(f"run {run.name!r} has no example {position}")
    answers = [a for a in store.run_answers(db, run.id) if a["example_id"] == example["id"]]
    verdicts = [j for j in store.judgments(db, run.id) if j["example_id"] == example["id"]]
    return {
        "position": position,
        "messages": example["messages"],
        "reference": example["reference"],
        "answers": [
            {"contestant": a["contestant"], "status": a["status"], "answer": a["answer"],
             "error": a["error"], "scores": a["scores"] or {}, "details": a["details"],
             "judgments": [j for j in verdicts if j["contestant"] == a["contestant"]]}
            for a in answers
        ],
    }  # fmt: skip


def result_records(db: sqlite_utils.Database, name: str | int) -> list[dict[str, Any]]:
    """One record per answer: the example, the contestant, the answer and every score."""
    run = store.get_run(db, name)
    answers = store.run_answers(db, run.id)
    examples = {e["id"]: e for e in store.run_examples(db, run.id)}
    chosen = run_metrics(run, answers)
    records = []
    for a in answers:
        example = examples[a["example_id"]]
        records.append({
            "run": run.name, "position": a["position"], "contestant": a["contestant"],
            "is_baseline": a["contestant"] == run.baseline.name,
            "prompt": prompt_text(example["messages"]), "reference": example["reference"],
            "answer": a["answer"], "status": a["status"], "error": a["error"],
            "n_tokens": a["n_tokens"],
            **{m: (a["scores"] or {}).get(m) for m in chosen},
            "details": a["details"],
        })  # fmt: skip
    return records


def write_results(db: sqlite_utils.Database, name: str | int, out: Path | str, fmt: str) -> int:
    """Every answer of a run with its scores, as CSV or JSONL; returns how many rows."""
    if fmt not in FORMATS:
        raise ValidationError(f"export format must be one of {', '.join(FORMATS)}")
    run = store.get_run(db, name)
    if run.status != RunStatus.DONE:
        raise ValidationError(f"run {run.name!r} is {run.status}: its results come when it is done")
    records = result_records(db, run.id)
    write_records(Path(out), records, fmt, list(records[0]) if records else [])
    return len(records)
