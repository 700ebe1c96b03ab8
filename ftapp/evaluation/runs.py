"""Evaluation runs: automatic evaluation of two or more contestants (the base model,
prompt-engineered variants, adapters, checkpoints) on held-out examples.

An admin (or `ftapp eval run`) creates a run: the examples (a frozen version's test split or
an uploaded file), the contestants (the first is the baseline), the sampling (greedy by
default, so a rerun gives the same answers), the metrics, user-defined checks and an optional
judge model. Every contestant's answer to every example is generated in the background by
the answer queue (ftapp/generation/); when they are all in, the run is scored here: text metrics
against the reference, latency and tokens per second, each check, the judge comparing
each contestant with the baseline in both orders, and on a preference version's pairs each
contestant's preference accuracy (preference_accuracy.py: scored with the model's own
log-probabilities, in the answer queue's thread like the rest of the scoring). report.py
turns the scores into the report. Checks that run an admin's code obey the installation's
switch (`code_checks`) twice: at creation, and again when scoring, since the switch may have
been turned off meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from ftapp.arena.contestants import resolve_contestants
from ftapp.arena.prompts import Prompt, load_prompts
from ftapp.arena.sessions import SESSION_NAME
from ftapp.data.versions import resolve_version
from ftapp.errors import Conflict, FtappError, ValidationError
from ftapp.evaluation import checks, judge, metrics, preference_accuracy
from ftapp.generation import progress, queue
from ftapp.generation.chat import OpenDb
from ftapp.generation.progress import GenerationProgress
from ftapp.models.registry import BaseModel
from ftapp.records import EvalRun, RunStatus
from ftapp.serving.backend import Sampling
from ftapp.settings import Settings
from ftapp.store import answers as answers_store
from ftapp.store import evaluation as store
from ftapp.store.answers import EVAL_ANSWERS_TABLE

log = logging.getLogger(__name__)

# Greedy: the same model on the same examples gives the same answers, so runs compare.
DEFAULT_SAMPLING = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=256)
JUDGE_WORKERS = 4  # judge requests in flight at once (an external server batches them)

CountTokens = Callable[[list[str]], list[int]]


@dataclass(frozen=True)
class RunSummary:
    run: EvalRun
    progress: GenerationProgress
    failures: list[str]  # distinct reasons of answers that failed


def create_run(
    db: sqlite_utils.Database,
    base: BaseModel,
    *,
    name: str,
    prompts: list[Prompt],
    source: str,
    contestants: list[str],
    sampling: Sampling = DEFAULT_SAMPLING,
    scoring: dict[str, Any] | None = None,
    check_specs: list[dict[str, Any]] | None = None,
    judge_config: dict[str, Any] | None = None,
    dataset_version_id: int | None = None,
    code_checks: bool = False,
    pairs: list[dict[str, Any] | None] | None = None,
    user: str,
) -> EvalRun:
    """Check everything, then write the run, its examples and its pending answers at once.
    Python-file and command checks are refused unless `code_checks` (Settings.code_checks).
    `pairs` (one per prompt, None where it is not a pair) are the preference pairs that
    preference accuracy scores; that metric is refused without any."""
    name = (name or "").strip()
    if not SESSION_NAME.match(name):
        raise ValidationError(
            f"run name {name!r}: use 1-80 letters, digits, spaces, '.', '_' or '-'"
        )
    if store.run_name_taken(db, name):
        raise Conflict(f"an evaluation run named {name!r} exists already; choose another name")
    chosen = resolve_contestants(db, base, contestants)
    if len(chosen) < 2:
        raise ValidationError(
            "an evaluation needs at least two contestants (the first is the baseline)"
        )
    if not prompts:
        raise ValidationError("an evaluation needs at least one example")
    config = metrics.ScoringConfig.from_dict(scoring or {})
    if preference_accuracy.METRIC in config.metrics:
        preference_accuracy.check_pairs(pairs, len(prompts), source)
    checks.refuse_code_checks(check_specs or [], code_checks)
    specs = [checks.parse_check(spec) for spec in check_specs or []]
    names = [spec.name for spec in specs]
    for spec in specs:
        if spec.name in metrics.METRICS or spec.name == "judge":
            raise ValidationError(f"check {spec.name!r}: a metric has that name; rename the check")
        if names.count(spec.name) > 1:
            raise ValidationError(f"check {spec.name!r} is listed twice")
    judge_settings = judge.parse_judge(judge_config) if judge_config else None
    row = {
        "name": name,
        "source": source,
        "dataset_version_id": dataset_version_id,
        "contestants_json": json.dumps([asdict(c) for c in chosen]),
        "sampling_json": json.dumps(asdict(sampling)),
        "checks_json": json.dumps(
            {**config.to_dict(), "checks": [spec.to_dict() for spec in specs]}
        ),
        "judge_json": json.dumps(judge_settings.to_dict()) if judge_settings else None,
        "created_by": user,
    }
    run_id = store.insert_run(db, row, [(p.messages, p.reference) for p in prompts], pairs)
    return store.get_run(db, run_id)


def keep_check_file(checks_dir: Path, uploaded: Path | str) -> Path:
    """A copy of an uploaded Python check in ftapp's own folder, named after its contents: a
    run is scored later (after a restart, too) with exactly the file it was created with, and
    the upload's temporary copy may be gone by then."""
    source = Path(uploaded)
    if source.suffix != ".py" or not source.is_file():
        raise ValidationError(f"check file {source.name!r}: upload a Python file (.py)")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", source.stem)[:40] or "check"
    kept = checks_dir / f"{stem}-{digest}.py"
    if not kept.exists():
        checks_dir.mkdir(parents=True, exist_ok=True)
        partial = kept.with_suffix(".partial")
        shutil.copyfile(source, partial)
        partial.replace(kept)
    return kept


def start_run(
    db: sqlite_utils.Database,
    base: BaseModel,
    settings: Settings,
    *,
    name: str,
    contestants: list[str],
    version: str | None = None,
    split: str = "test",
    prompt_file: Path | str | None = None,
    sampling: Sampling = DEFAULT_SAMPLING,
    metric_names: list[str] | None = None,
    regex: str | None = None,
    ready_checks: list[str] | None = None,
    python_checks: list[Path | str] | None = None,
    command_checks: list[str] | None = None,
    check_input: str = "stdin",
    judge_url: str | None = None,
    judge_model: str | None = None,
    user: str,
) -> EvalRun:
    """A run from the fields of the Evaluate tab or `ftapp eval run`, the one way both build
    it: the examples from a version's split or a file, the checks, the judge. A Python check
    file is copied into FTAPP_HOME/checks first (where code checks may run at all), so the
    run is scored with it even after the original file is moved or deleted. Examples from a
    preference version's split bring their pairs; with no metrics named, preference accuracy
    is then scored beside the default metrics."""
    judge_url, judge_model = (judge_url or "").strip(), (judge_model or "").strip()
    if bool(judge_url) != bool(judge_model):
        raise ValidationError("give both the judge's URL and its model, or neither")
    commands = [c for c in command_checks or [] if c.strip()]
    specs = checks.check_specs(ready_checks or [], [], commands, check_input or "stdin")
    for python_file in python_checks or []:
        # Kept only where it may run; else create_run refuses it before anything is copied.
        kept = Path(python_file)
        if settings.code_checks:
            kept = keep_check_file(settings.home / "checks", python_file)
        check_name = re.sub(r"[^A-Za-z0-9_-]", "_", Path(python_file).stem)[:40] or "check"
        specs.append({"name": check_name, "kind": "python", "path": str(kept)})
    scoring: dict[str, Any] = {}
    if metric_names:
        scoring["metrics"] = list(metric_names)
    if (regex or "").strip():
        scoring["regex"] = regex
    prompts, source = load_prompts(db, version, split, prompt_file)
    version_id = None if prompt_file else resolve_version(db, version or "").id
    pairs = None if prompt_file else preference_accuracy.version_pairs(db, version or "", split)
    if not metric_names and pairs and any(pairs):
        scoring["metrics"] = [*metrics.DEFAULT_METRICS, preference_accuracy.METRIC]
    return create_run(
        db, base, name=name, prompts=prompts, source=source, contestants=contestants,
        sampling=sampling, scoring=scoring, check_specs=specs,
        judge_config={"url": judge_url, "model": judge_model} if judge_url else None,
        dataset_version_id=version_id, code_checks=settings.code_checks, pairs=pairs,
        user=user,
    )  # fmt: skip


def get_run(db: sqlite_utils.Database, name_or_id: str | int) -> EvalRun:
    """The run with this name (text) or id (a whole number); NotFound otherwise."""
    return store.get_run(db, name_or_id)


def run_progress(db: sqlite_utils.Database, run_id: int) -> GenerationProgress:
    return progress.generation_progress(db, EVAL_ANSWERS_TABLE, run_id)


def run_summaries(db: sqlite_utils.Database) -> list[RunSummary]:
    """Every run, newest first, with its generation progress and why answers failed."""
    summaries = []
    for run in store.list_runs(db):
        failures = progress.failure_reasons(db, EVAL_ANSWERS_TABLE, run.id)
        summaries.append(RunSummary(run, run_progress(db, run.id), failures))
    return summaries


def cancel_run(db: sqlite_utils.Database, name: str) -> EvalRun:
    """Stop a run that is still generating: nothing more is claimed for it."""
    run = store.get_run(db, name)
    if run.status not in (RunStatus.GENERATING, RunStatus.SCORING):
        raise Conflict(
            f"run {run.name!r} is {run.status}; only a running evaluation can be cancelled"
        )
    store.set_run_status(db, run.id, RunStatus.CANCELLED)
    return store.get_run(db, run.id)


def retry_run(db: sqlite_utils.Database, name: str) -> int:
    """Generate the failed answers of a run again (and score it again afterwards)."""
    run = store.get_run(db, name)
    if run.status == RunStatus.GENERATING:
        raise Conflict(f"run {run.name!r} is still generating")
    retried = answers_store.retry_failed_answers(db, EVAL_ANSWERS_TABLE, run.id)
    if not retried and run.status != RunStatus.FAILED:
        raise Conflict(f"run {run.name!r} has no failed answer to retry")
    store.set_run_status(db, run.id, RunStatus.GENERATING)
    return retried


def eval_work_list(
    count_tokens: CountTokens,
    settings: Settings,
    answer_likelihood: preference_accuracy.AnswerLikelihood | None = None,
) -> queue.WorkList:
    """The runs' work list for the answer queue; a run whose answers are all in is scored
    with `count_tokens` counting the answers' tokens (for tokens per second), under `settings`
    (may code checks run, which hosts get the judge's key), with `answer_likelihood` (the serving
    backend's, Services.answer_likelihood) scoring preference pairs."""
    return queue.WorkList(
        name="evaluation answer",
        table=EVAL_ANSWERS_TABLE,
        waiting_groups=store.runs_waiting,
        complete=lambda open_db, run_id: complete_run(
            open_db, run_id, count_tokens, settings, answer_likelihood
        ),
    )


def complete_run(
    open_db: OpenDb,
    run_id: int,
    count_tokens: CountTokens,
    settings: Settings,
    answer_likelihood: preference_accuracy.AnswerLikelihood | None = None,
) -> None:
    """Score a run once all its answers are in (done or failed for good). A crash while
    scoring leaves the run 'scoring'; it is scored again from the start next time."""
    with open_db() as db:
        run = store.get_run(db, run_id)
        if run.status not in (RunStatus.GENERATING, RunStatus.SCORING):
            return
        counts = answers_store.answer_counts(db, EVAL_ANSWERS_TABLE, run_id)
        if counts.get("pending") or counts.get("running"):
            return
        answers = store.run_answers(db, run_id)
        if not counts.get("done"):
            reason = next((a["error"] for a in answers if a["error"]), "unknown")
            store.set_run_status(db, run_id, RunStatus.FAILED, f"no answer was generated: {reason}")
            return
        store.set_run_status(db, run_id, RunStatus.SCORING)
        examples = {e["id"]: e for e in store.run_examples(db, run_id)}
    try:
        note = score_run(open_db, run, answers, examples, count_tokens, settings, answer_likelihood)
    except Exception as exc:  # a broken check or a bug: the run says why, the app goes on
        log.exception("scoring evaluation run %s failed", run.name)
        reason = str(exc) if isinstance(exc, FtappError) else f"{type(exc).__name__}: {exc}"
        with open_db() as db:
            store.set_run_status(db, run_id, RunStatus.FAILED, f"scoring failed: {reason}")
        return
    with open_db() as db:
        if store.get_run(db, run_id).status == RunStatus.SCORING:  # not cancelled meanwhile
            store.set_run_status(db, run_id, RunStatus.DONE, note)


def score_run(
    open_db: OpenDb,
    run: EvalRun,
    answers: list[dict[str, Any]],
    examples: dict[int, dict[str, Any]],
    count_tokens: CountTokens,
    settings: Settings,
    answer_likelihood: preference_accuracy.AnswerLikelihood | None = None,
) -> str | None:
    """Score every generated answer of a run and save the scores; returns a note for the run
    (what the judge or the preference scoring could not do), or None."""
    done = [a for a in answers if a["status"] == "done"]
    config = metrics.ScoringConfig.from_dict({k: v for k, v in run.checks.items() if k != "checks"})
    scorer = metrics.Scorer(config)
    n_tokens = dict(zip([a["id"] for a in done], count_tokens([a["answer"] for a in done]),
                        strict=True))  # fmt: skip
    scores: dict[int, dict[str, float | None]] = {}
    details: dict[int, dict[str, str]] = {a["id"]: {} for a in done}
    for answer in done:
        reference = examples[answer["example_id"]]["reference"]
        values = dict(scorer.score(answer["answer"], reference))
        seconds = (answer["latency_ms"] or 0) / 1000
        values["latency_ms"] = answer["latency_ms"]
        values["tokens_per_second"] = n_tokens[answer["id"]] / seconds if seconds > 0 else None
        scores[answer["id"]] = values
    # As stored: a check file deleted since the run was created fails per answer, with why; so
    # does a code check when the installation has turned them off since.
    for spec in (checks.CheckSpec(**stored) for stored in run.checks.get("checks", [])):
        items = [
            checks.CheckItem(a["answer"], examples[a["example_id"]]["reference"],
                             prompt_text(examples[a["example_id"]]["messages"]))
            for a in done
        ]  # fmt: skip
        results = checks.run_check(spec, items, code_checks=settings.code_checks)
        for answer, result in zip(done, results, strict=True):
            scores[answer["id"]][spec.name] = result.score
            details[answer["id"]][spec.name] = result.detail
    notes, judged = [], []
    if preference_accuracy.METRIC in config.metrics:
        notes.append(_preferences(run, done, examples, scores, details, answer_likelihood))
    if run.judge:
        note, judged = _judge(run, done, examples, scores, settings.judge_api_hosts)
        notes.append(note)
    with open_db() as db:
        store.save_scores(db, scores, details, n_tokens)
        store.replace_judgments(db, run.id, judged)
    return "; ".join(note for note in notes if note) or None


def _preferences(
    run: EvalRun,
    done: list[dict[str, Any]],
    examples: dict[int, dict[str, Any]],
    scores: dict[int, dict[str, float | None]],
    details: dict[int, dict[str, str]],
    answer_likelihood: preference_accuracy.AnswerLikelihood | None,
) -> str | None:
    """Each answer's preference accuracy and margin into its scores (its log-probabilities
    into its details); a note saying what could not be scored, or None."""
    if answer_likelihood is None:
        return "preference accuracy was not scored: this scorer has no serving backend"
    scored, errors = preference_accuracy.score_preferences(run, done, examples, answer_likelihood)
    for answer_id, pair in scored.items():
        scores[answer_id][preference_accuracy.METRIC] = pair.accuracy
        scores[answer_id][preference_accuracy.MARGIN] = pair.margin
        details[answer_id][preference_accuracy.METRIC] = pair.detail()
    if not errors:
        return None
    return (f"preference accuracy failed on {len(errors)} of {len(errors) + len(scored)} "
            f"answers: {errors[0]}")  # fmt: skip


def prompt_text(messages: list[dict[str, str]]) -> str:
    """A conversation as one text for a check or a judge: the last user turn alone, or every
    turn with its role when there is more than one."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _judge(
    run: EvalRun,
    done: list[dict[str, Any]],
    examples: dict[int, dict[str, Any]],
    scores: dict[int, dict[str, float | None]],
    api_hosts: tuple[str, ...],
) -> tuple[str | None, list[dict[str, Any]]]:
    """Each contestant's answer against the baseline's on the same example, judged in both
    orders; the contestant's score ("judge": 1 better, 0.5 tie, 0 worse) goes into its scores.
    FTAPP_JUDGE_API_KEY goes along only to the hosts in `api_hosts`."""
    config = judge.JudgeConfig.from_dict(run.judge)
    problem = judge.judge_health(config, api_hosts=api_hosts)
    if problem:
        return f"the judge was not used: {problem}", []
    baseline = {a["example_id"]: a for a in done if a["contestant"] == run.baseline.name}
    pairs = [(a, baseline[a["example_id"]]) for a in done
             if a["contestant"] != run.baseline.name and a["example_id"] in baseline]  # fmt: skip

    def judge_one(pair: tuple[dict, dict]) -> list[judge.Judgment] | str:
        answer, opponent = pair
        example = examples[answer["example_id"]]
        try:
            return judge.judge_pair(
                config, prompt_text(example["messages"]), example["reference"],
                answer["answer"], opponent["answer"], api_hosts=api_hosts,
            )  # fmt: skip
        except FtappError as exc:
            return str(exc)

    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=JUDGE_WORKERS, thread_name_prefix="ftapp-judge") as pool:
        for (answer, opponent), result in zip(pairs, pool.map(judge_one, pairs), strict=True):
            if isinstance(result, str):
                errors.append(result)
                continue
            scores[answer["id"]]["judge"] = judge.pair_score(result)
            rows += [{"example_id": answer["example_id"], "contestant": answer["contestant"],
                      "opponent": opponent["contestant"], **asdict(j)} for j in result]  # fmt: skip
    note = None
    if errors:
        note = f"the judge failed on {len(errors)} of {len(pairs)} pairs: {errors[0]}"
    return note, rows
