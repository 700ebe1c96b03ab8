"""The model card of an exported model: what it is, how to load it, what it was trained on and
how, and how it did. `card_facts` gathers everything from the database (the variant, its base
model, the training job and its full config, the dataset version, the loss curves, finished
evaluation runs, arena votes); `render_model_card` turns those facts into a Hugging Face model
card (YAML metadata read by the Hub, then Markdown), escaping user text wherever it lands in a
table so a run name with `|` or HTML can't break the page.
"""

from __future__ import annotations

import html
import json
from typing import Any

import sqlite_utils
from huggingface_hub import ModelCard, ModelCardData

from ftapp.arena.leaderboard import leaderboard
from ftapp.errors import NotFound
from ftapp.models.registry import get_base_model
from ftapp.records import DatasetVersion
from ftapp.settings import Settings
from ftapp.store import jobs as job_store
from ftapp.store.arena import has_votes
from ftapp.store.versions import get_version_by_id

# Markdown characters that could start code, emphasis, a link or a new table cell. HTML is
# escaped apart (html.escape), so no tag in user text reaches the page. "_" is left alone: it
# is in most config keys, and inside a word it never starts emphasis.
_MARKDOWN = str.maketrans({char: "\\" + char for char in "\\`*[]|"})


def card_facts(db: sqlite_utils.Database, settings: Settings, model_name: str) -> dict[str, Any]:
    """Everything the card says about model variant `model_name`, as plain JSON-ready data.
    Parts the database doesn't know (a variant registered without a job, no votes) are None
    or empty."""
    variant = job_store.get_variant(db, model_name)
    job = job_store.get_job(db, variant.job_id) if variant.job_id is not None else None
    version = get_version_by_id(db, job.dataset_version_id) if job else None
    return {
        "model": variant.name,
        "variant": {
            "kind": variant.kind,
            "step": variant.step,
            "eval_loss": variant.eval_loss,
            "is_best": variant.is_best,
        },
        "base_model": _base_model(db, settings, variant.base_model),
        "job": None if job is None else {"id": job.id, "name": job.name, "config": job.config},
        "dataset": None if version is None else _dataset(version),
        "curves": _curves(job_store.job_metrics(db, job.id)) if job else None,
        "evaluations": _evaluations(db, variant.name),
        "arena": _arena(db, variant.name),
    }


def _dataset(version: DatasetVersion) -> dict[str, Any]:
    return {
        "label": version.label,
        "content_hash": version.content_hash,
        "n_examples": version.n_examples,
        "n_train": version.n_train,
        "n_validation": version.n_validation,
        "n_test": version.n_test,
    }


def _base_model(db: sqlite_utils.Database, settings: Settings, name: str) -> dict[str, Any]:
    try:
        base = get_base_model(db, settings.models_dir, name)
    except NotFound:  # unregistered since: the card still names it
        return {"name": name, "hub_id": None}
    return {"name": base.name, "hub_id": base.hub_id}


def _curves(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """First, last and lowest losses of the job's progress rows (ordered by step)."""
    train = [row for row in rows if row["kind"] == "train" and row["loss"] is not None]
    evals = [row for row in rows if row["kind"] == "eval" and row["loss"] is not None]
    if not train and not evals:
        return None
    epochs = [row["epoch"] for row in rows if row["epoch"] is not None]
    # min() keeps the first of equal losses: the earliest step reached it.
    best_train = min(train, key=lambda row: row["loss"]) if train else None
    best_eval = min(evals, key=lambda row: row["loss"]) if evals else None
    return {
        "steps": max(row["step"] for row in train + evals),
        "epochs": max(epochs) if epochs else None,
        "first_train_loss": train[0]["loss"] if train else None,
        "last_train_loss": train[-1]["loss"] if train else None,
        "lowest_train_loss": best_train["loss"] if best_train else None,
        "lowest_train_loss_step": best_train["step"] if best_train else None,
        "n_evaluations": len(evals),
        "lowest_validation_loss": best_eval["loss"] if best_eval else None,
        "lowest_validation_loss_step": best_eval["step"] if best_eval else None,
        "last_validation_loss": evals[-1]["loss"] if evals else None,
        # Preference methods: TRL's rewards at the last step that has them (None for SFT).
        "last_reward_margin": _last(train, "rewards_margin"),
        "last_validation_preference_accuracy": _last(evals, "rewards_accuracy"),
    }


def _last(rows: list[dict[str, Any]], column: str) -> float | None:
    values = [row[column] for row in rows if row.get(column) is not None]
    return values[-1] if values else None


def _evaluations(db: sqlite_utils.Database, model_name: str) -> list[dict[str, Any]]:
    """One entry per finished evaluation run and contestant of this model: per metric, the
    contestant's mean with its 95% interval, the baseline's mean (the run's first contestant)
    and the verdict, exactly as the Evaluate tab's report has them."""
    from ftapp.evaluation.report import build_report
    from ftapp.records import RunStatus
    from ftapp.store.evaluation import run_examples, runs_with_model

    results = []
    for run in reversed(runs_with_model(db, model_name)):  # oldest first
        if run.status != RunStatus.DONE:
            continue
        report = build_report(db, run.id)
        baseline = run.baseline.name
        for contestant in (c.name for c in run.contestants if c.model == model_name):
            metrics = {}
            for metric in report.metrics:
                mine = [r for r in report.rows if r.metric == metric and r.contestant == contestant]
                theirs = [r for r in report.rows if r.metric == metric and r.contestant == baseline]
                if not mine:
                    continue
                metrics[metric] = {
                    "model": mine[0].value.mean, "low": mine[0].value.low,
                    "high": mine[0].value.high,
                    "baseline": theirs[0].value.mean if theirs else None,
                    "verdict": mine[0].verdict,
                }  # fmt: skip
            results.append({"run": run.name, "source": run.source,
                            "n_examples": len(run_examples(db, run.id)),
                            "contestant": contestant, "baseline": baseline,
                            "metrics": metrics})  # fmt: skip
    return results


def _arena(db: sqlite_utils.Database, model_name: str) -> dict[str, Any] | None:
    """This model's rating over all votes (the Leaderboard tab's numbers), or None without
    votes on its battles."""
    if not has_votes(db, model_name):
        return None
    board = leaderboard(db)
    rating = next((r for r in board.ratings if r.model == model_name), None)
    if rating is None:
        return None
    return {"rating": rating.rating, "lower": rating.lower, "upper": rating.upper,
            "n_votes": rating.n_votes, "wins": rating.wins, "losses": rating.losses,
            "ties": rating.ties, "all_votes": board.n_votes}  # fmt: skip


# --- rendering -------------------------------------------------------------------------------


def md_escape(value: Any) -> str:
    """A value as text that is safe inside a Markdown table cell: HTML and Markdown characters
    escaped, line breaks turned into spaces. Non-strings are written as JSON."""
    text = value if isinstance(value, str) else json.dumps(value)
    text = html.escape(text, quote=False).translate(_MARKDOWN)
    return " ".join(text.split())


def render_model_card(facts: dict[str, Any], merged: bool) -> str:
    """The README.md of an adapter (merged=False) or a merged model folder or repo.
    `facts` is `card_facts(...)`, optionally with "repo_id" for the loading snippet."""
    base = facts["base_model"]
    data = ModelCardData(
        base_model=base["hub_id"] or None,
        library_name="transformers" if merged else "peft",
        tags=["ftapp", "lora", _method(facts["job"]), "trl", *(["merged"] if merged else [])],
        pipeline_tag="text-generation",
    )
    sections = [
        _intro(facts, merged),
        _usage(facts, merged),
        _training_data(facts["dataset"]),
        _training_config(facts["job"]),
        _curves_table(facts["curves"]),
        _evaluation_table(facts["evaluations"]),
        _arena_text(facts["model"], facts["arena"]),
    ]
    body = "\n\n".join(section.strip() for section in sections)
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n"))


def _intro(facts: dict[str, Any], merged: bool) -> str:
    base, variant, job = facts["base_model"], facts["variant"], facts["job"]
    base_text = md_escape(base["name"])
    if base["hub_id"]:
        base_text += f" ([{md_escape(base['hub_id'])}](https://huggingface.co/{base['hub_id']}))"
    what = ("the base model with the LoRA adapter merged into its weights: load it like any "
            "transformers model" if merged else "a LoRA adapter: load it on top of the base "
            "model with peft")  # fmt: skip
    if variant["kind"] == "checkpoint":
        origin = f"the checkpoint at step {variant['step']}"
    else:
        origin = "the final adapter"
    if job:
        origin += f" of training job #{job['id']} ({md_escape(job['name'])})"
    method = _method(job)
    how = f"{METHOD_NAMES[method]}, with TRL"
    start = (job or {}).get("config", {}).get("start_adapter")
    if start:
        how += f", going on from the adapter {md_escape(start)}"
    lines = [
        f"# {md_escape(facts['model'])}",
        "",
        f"A LoRA fine-tune of {base_text} ({how}), trained and exported with ftapp. "
        f"This is {what}. It is {origin}.",
    ]
    if variant["eval_loss"] is not None:
        best = " (the best checkpoint by validation loss)" if variant["is_best"] else ""
        lines.append(f"\nIts validation loss: {_num(variant['eval_loss'])}{best}.")
    return "\n".join(lines)


METHOD_NAMES = {
    "sft": "supervised fine-tuning on conversations",
    "dpo": "DPO on preference pairs",
    "orpo": "ORPO on preference pairs",
    "kto": "KTO on answers labelled good or bad",
}


def _method(job: dict[str, Any] | None) -> str:
    """The job's training method; sft for a job from before methods existed, or none."""
    return (job or {}).get("config", {}).get("method") or "sft"


def _usage(facts: dict[str, Any], merged: bool) -> str:
    here = facts.get("repo_id") or "path/to/this/folder"
    base = facts["base_model"]
    base_ref = base["hub_id"] or f"path/to/{base['name']}"
    if merged:
        load = (f'model = AutoModelForCausalLM.from_pretrained("{here}")\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{here}")')  # fmt: skip
        imports = "from transformers import AutoModelForCausalLM, AutoTokenizer"
    else:
        load = (f'base = AutoModelForCausalLM.from_pretrained("{base_ref}")\n'
                f'model = PeftModel.from_pretrained(base, "{here}")\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{here}")')  # fmt: skip
        imports = ("from peft import PeftModel\n"
                   "from transformers import AutoModelForCausalLM, AutoTokenizer")  # fmt: skip
    return f"""## How to use

```python
{imports}

{load}
messages = [{{"role": "user", "content": "Hello!"}}]
inputs = tokenizer.apply_chat_template(
    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
)
output = model.generate(**inputs, max_new_tokens=256)
print(tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```"""


def _training_data(dataset: dict[str, Any] | None) -> str:
    if dataset is None:
        return "## Training data\n\nNot recorded: this model was registered without its job."
    rows = [
        ("dataset version", md_escape(dataset["label"])),
        ("content hash (SHA-256)", md_escape(dataset["content_hash"])),
        ("examples", str(dataset["n_examples"])),
        ("train / validation / test",
         f"{dataset['n_train']} / {dataset['n_validation']} / {dataset['n_test']}"),
    ]  # fmt: skip
    return "## Training data\n\n" + _table(("", ""), rows)


def _training_config(job: dict[str, Any] | None) -> str:
    if job is None:
        return "## Training configuration\n\nNot recorded."
    rows = [(md_escape(key), md_escape(value)) for key, value in job["config"].items()]
    return "## Training configuration\n\n" + _table(("key", "value"), rows)


def _curves_table(curves: dict[str, Any] | None) -> str:
    if curves is None:
        return "## Training curves\n\nNo progress was recorded."
    c = curves
    rows = [
        ("optimizer steps", str(c["steps"])),
        ("epochs", _num(c["epochs"])),
        ("first train loss", _num(c["first_train_loss"])),
        ("last train loss", _num(c["last_train_loss"])),
        ("lowest train loss", _at(c["lowest_train_loss"], c["lowest_train_loss_step"])),
        ("validation evaluations", str(c["n_evaluations"])),
        ("lowest validation loss",
         _at(c["lowest_validation_loss"], c["lowest_validation_loss_step"])),
        ("last validation loss", _num(c["last_validation_loss"])),
    ]  # fmt: skip
    if c.get("last_reward_margin") is not None:
        rows.append(("last reward margin (chosen minus rejected)", _num(c["last_reward_margin"])))
    if c.get("last_validation_preference_accuracy") is not None:
        rows.append(("last validation preference accuracy",
                     _num(c["last_validation_preference_accuracy"])))  # fmt: skip
    return "## Training curves\n\nOver the whole training job.\n\n" + _table(("", ""), rows)


def _evaluation_table(evaluations: list[dict[str, Any]]) -> str:
    if not evaluations:
        return "## Evaluation\n\nNo finished evaluation run includes this model."
    rows = []
    for result in evaluations:
        for metric, means in result["metrics"].items():
            interval = ""
            if means["low"] is not None:
                interval = f" [{_num(means['low'])}, {_num(means['high'])}]"
            rows.append((
                md_escape(result["run"]), md_escape(result["source"]),
                str(result["n_examples"]), md_escape(metric),
                f"{_num(means['model'])}{interval} ({md_escape(result['contestant'])})",
                f"{_num(means['baseline'])} ({md_escape(result['baseline'])})",
                md_escape(means["verdict"] or ""),
            ))  # fmt: skip
    header = ("run", "source", "examples", "metric", "this model", "baseline", "verdict")
    intro = ("Mean scores per metric on each finished evaluation run, with 95% bootstrap "
             "intervals; the baseline is the run's first contestant, and the verdict compares "
             "the two on the same examples.")  # fmt: skip
    return f"## Evaluation\n\n{intro}\n\n" + _table(header, rows)


def _arena_text(model: str, arena: dict[str, Any] | None) -> str:
    if arena is None:
        return "## Arena\n\nNo blind arena votes on this model yet."
    interval = "n/a"
    if arena["lower"] is not None:
        interval = f"{arena['lower']:.1f} to {arena['upper']:.1f}"
    rows = [(md_escape(model), f"{arena['rating']:.1f}", interval, str(arena["n_votes"]),
             str(arena["wins"]), str(arena["losses"]), str(arena["ties"]))]  # fmt: skip
    header = ("model", "rating", "95% interval", "votes", "wins", "losses", "ties")
    intro = (f"Bradley-Terry rating (Elo scale, the base model at 1000) over all "
             f"{arena['all_votes']} arena votes; ties include \"both bad\".")  # fmt: skip
    return f"## Arena\n\n{intro}\n\n" + _table(header, rows)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    """Four significant digits: losses near the end of training are small (0.0007165)."""
    return "n/a" if value is None else f"{value:.4g}"


def _at(value: float | None, step: int | None) -> str:
    return "n/a" if value is None else f"{_num(value)} (step {step})"
