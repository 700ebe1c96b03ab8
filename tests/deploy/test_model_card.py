"""The model card, on a copy of the database that trained the "secret" adapter, with
validation losses, evaluation runs and arena votes added by the test: every fact the card
states is checked against numbers computed here from the rows, its metadata parses back, and
user text with `|` or HTML can't break out of its table cell."""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing

import pytest

from ftapp.arena.ratings import Outcome, rating_table
from ftapp.deploy.model_card import card_facts, md_escape, render_model_card
from ftapp.settings import Settings
from ftapp.store import arena as arena_store
from ftapp.store import jobs as job_store
from ftapp.store.db import open_db
from ftapp.store.versions import get_version_by_id
from ftapp.timeutil import utc_now

pytestmark = pytest.mark.slow

RUN_NAME = "nightly | <script>alert(1)</script>"
RUN_SOURCE = "secret@v1 test split, <b>hand-picked</b>"
CONTESTANTS = [{"name": "base", "model": "base", "system_prompt": ""},
               {"name": "secret", "model": "secret", "system_prompt": ""}]  # fmt: skip
# Per contestant, the scores_json of its three answers (None: a metric that didn't apply).
SCORES = {
    "base": [{"exact_match": 0, "bleu": 10.0}, {"exact_match": 0, "bleu": 20.0},
             {"exact_match": None, "bleu": 30.0}],
    "secret": [{"exact_match": 1, "bleu": 50.0}, {"exact_match": 1, "bleu": None},
               {"exact_match": 0, "bleu": 60.0}],
}  # fmt: skip
# (left, right, choice) of each voted battle.
VOTES = [("secret", "base", "a"), ("base", "secret", "b"), ("secret", "base", "a"),
         ("base", "secret", "a"), ("secret", "base", "tie"), ("base", "secret", "b")]  # fmt: skip


@pytest.fixture
def card_home(tmp_path, models_dir, secret_adapter) -> Settings:
    """A copy of the adapter's home database (job, metrics, version, variants) in a fresh home,
    plus two validation losses, evaluation runs and votes."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    settings = Settings(home=home)
    settings.ensure_dirs()
    source = sqlite3.connect(secret_adapter.settings.db_path)
    with closing(source), closing(sqlite3.connect(settings.db_path)) as copy:
        source.backup(copy)
    with closing(open_db(settings.db_path)) as db:
        job_id = job_store.get_variant(db, "secret").job_id
        job_store.add_metric(db, job_id, "eval", 12, epoch=1.5, loss=0.25)
        job_store.add_metric(db, job_id, "eval", 24, epoch=3.0, loss=0.375)
        _add_run(db, RUN_NAME, RUN_SOURCE, "done", CONTESTANTS, SCORES, failed_scores=True)
        # Not counted: a run still generating, and a finished run without this model.
        _add_run(db, "unfinished", "x", "generating", CONTESTANTS, SCORES)
        others = [CONTESTANTS[0], {"name": "pirate", "model": "base", "system_prompt": "Arr"}]
        _add_run(db, "others", "x", "done", others, {"base": SCORES["base"]})
        for i, (left, right, choice) in enumerate(VOTES):
            battle_id = arena_store.insert_battle(db, {
                "model_a": left, "model_b": right, "conversation_a_json": "[]",
                "conversation_b_json": "[]", "sampling_json": "{}", "status": "ready",
                "created_by": "t",
            })  # fmt: skip
            arena_store.insert_vote(db, {"battle_id": battle_id, "reviewer": f"r{i % 2}",
                                         "choice": choice})  # fmt: skip
    return settings


def _add_run(db, name, source, status, contestants, scores, failed_scores=False) -> None:
    run_id = db["eval_runs"].insert({
        "name": name, "source": source, "contestants_json": json.dumps(contestants),
        "sampling_json": "{}", "status": status, "created_at": utc_now(),
        "checks_json": json.dumps({"metrics": ["exact_match", "bleu"], "checks": []}),
        "created_by": "t",
    }).last_pk  # fmt: skip
    n = max(len(rows) for rows in scores.values())
    example_ids = [
        db["eval_examples"].insert({"run_id": run_id, "position": i, "messages_json": "[]"}).last_pk
        for i in range(n)
    ]
    for contestant, rows in scores.items():
        for example_id, row in zip(example_ids, rows, strict=False):
            db["eval_answers"].insert({"run_id": run_id, "example_id": example_id,
                                       "contestant": contestant, "status": "done",
                                       "answer": "x", "scores_json": json.dumps(row)})  # fmt: skip
    if failed_scores:  # a failed answer's scores are never counted
        extra = db["eval_examples"].insert({"run_id": run_id, "position": n, "messages_json": "[]"})
        db["eval_answers"].insert({"run_id": run_id, "example_id": extra.last_pk,
                                   "contestant": "secret", "status": "failed",
                                   "scores_json": json.dumps({"exact_match": 99})})  # fmt: skip


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values)


def test_the_card_states_what_the_database_knows(card_home):
    from huggingface_hub import ModelCard

    with closing(open_db(card_home.db_path)) as db:
        facts = card_facts(db, card_home, "secret")
        variant = job_store.get_variant(db, "secret")
        job = job_store.get_job(db, variant.job_id)
        version = get_version_by_id(db, job.dataset_version_id)
        metrics = job_store.job_metrics(db, job.id)
    card = render_model_card(facts, merged=False)

    assert card.count("SmolLM2-135M-Instruct") >= 2  # the base model, named and in the snippet
    assert facts["base_model"] == {"name": "SmolLM2-135M-Instruct", "hub_id": None}
    assert f"| dataset version | {version.label} |" in card
    assert f"| content hash (SHA-256) | {version.content_hash} |" in card
    assert f"| examples | {version.n_examples} |" in card and version.n_examples == 8
    assert (f"| train / validation / test | {version.n_train} / {version.n_validation} / "
            f"{version.n_test} |") in card  # fmt: skip
    assert len(job.config) > 10
    for key, value in job.config.items():
        shown = value if isinstance(value, str) else json.dumps(value)
        assert f"| {key} | {shown} |" in card, key

    train = [m for m in metrics if m["kind"] == "train"]
    evals = [m for m in metrics if m["kind"] == "eval"]
    lowest = min(train, key=lambda m: m["loss"])
    curves = facts["curves"]
    assert curves["steps"] == 24 and curves["epochs"] == max(m["epoch"] for m in metrics)
    assert curves["first_train_loss"] == train[0]["loss"] and train[0]["step"] == 1
    assert curves["last_train_loss"] == train[-1]["loss"] and train[-1]["step"] == 24
    assert (curves["lowest_train_loss"], curves["lowest_train_loss_step"]) == (
        lowest["loss"], lowest["step"])  # fmt: skip
    assert (curves["lowest_validation_loss"], curves["lowest_validation_loss_step"]) == (0.25, 12)
    assert curves["last_validation_loss"] == 0.375 and len(evals) == 2
    assert f"| first train loss | {train[0]['loss']:.4g} |" in card
    assert f"| last train loss | {train[-1]['loss']:.4g} |" in card
    assert f"| lowest train loss | {lowest['loss']:.4g} (step {lowest['step']}) |" in card
    assert "| lowest validation loss | 0.25 (step 12) |" in card
    assert "| last validation loss | 0.375 |" in card

    (evaluation,) = facts["evaluations"]
    assert (evaluation["run"], evaluation["baseline"]) == (RUN_NAME, "base")
    assert evaluation["n_examples"] == 4  # three scored, one failed
    for metric in ("exact_match", "bleu"):
        mine = _mean([row[metric] for row in SCORES["secret"]])
        theirs = _mean([row[metric] for row in SCORES["base"]])
        shown = evaluation["metrics"][metric]
        assert (shown["model"], shown["baseline"]) == (pytest.approx(mine), pytest.approx(theirs))
        interval = f"[{shown['low']:.4g}, {shown['high']:.4g}]"
        assert f"| {metric} | {mine:.4g} {interval} (secret) | {theirs:.4g} (base) |" in card
    assert "unfinished" not in card and "others" not in card

    outcomes = [Outcome(left, right, choice) for left, right, choice in VOTES]
    (rating,) = [r for r in rating_table(outcomes) if r.model == "secret"]
    arena = facts["arena"]
    assert (arena["n_votes"], arena["wins"], arena["losses"], arena["ties"]) == (6, 4, 1, 1)
    assert arena["rating"] == pytest.approx(rating.rating)
    assert (f"| secret | {rating.rating:.1f} | {rating.lower:.1f} to {rating.upper:.1f} | 6 | "
            "4 | 1 | 1 |") in card  # fmt: skip

    data = ModelCard(card).data
    assert data.library_name == "peft" and data.pipeline_tag == "text-generation"
    assert {"ftapp", "lora"} <= set(data.tags) and data.base_model is None
    merged = ModelCard(render_model_card(facts, merged=True)).data
    assert merged.library_name == "transformers" and "merged" in merged.tags


def test_a_preference_job_says_its_method_and_rewards(card_home):
    from huggingface_hub import ModelCard

    with closing(open_db(card_home.db_path)) as db:
        job = job_store.get_job(db, job_store.get_variant(db, "secret").job_id)
        config = {**job.config, "method": "dpo", "start_adapter": "sft <b>start</b>"}
        db["jobs"].update(job.id, {"config_json": json.dumps(config)})
        job_store.add_metric(db, job.id, "train", 25, loss=0.5, rewards_margin=1.25)
        job_store.add_metric(db, job.id, "eval", 25, loss=0.4, rewards_accuracy=0.75)
        card = render_model_card(card_facts(db, card_home, "secret"), merged=False)
    assert ("(DPO on preference pairs, with TRL, going on from the adapter sft &lt;b&gt;start"
            "&lt;/b&gt;)") in card  # fmt: skip
    assert "| last reward margin (chosen minus rejected) | 1.25 |" in card
    assert "| last validation preference accuracy | 0.75 |" in card
    assert {"dpo", "trl"} <= set(ModelCard(card).data.tags)
    assert "sft" not in ModelCard(card).data.tags


def test_user_text_is_escaped_in_tables(card_home):
    with closing(open_db(card_home.db_path)) as db:
        card = render_model_card(card_facts(db, card_home, "secret"), merged=False)
    assert "<script>" not in card and "<b>" not in card
    assert "nightly \\| &lt;script&gt;alert(1)&lt;/script&gt;" in card
    assert "&lt;b&gt;hand-picked&lt;/b&gt;" in card
    # Every row of the evaluation table has exactly the header's cells.
    rows = [line for line in card.splitlines() if line.startswith("| nightly")]
    assert len(rows) == 2
    for row in rows:
        assert len(re.findall(r"(?<!\\)\|", row)) == 8  # 7 cells
    assert md_escape("a|b\n<i>c</i> `d` *e* [f](g)") == (
        "a\\|b &lt;i&gt;c&lt;/i&gt; \\`d\\` \\*e\\* \\[f\\](g)"
    )


def test_a_base_model_with_a_hub_id_is_the_cards_base_model(card_home):
    from huggingface_hub import ModelCard

    with closing(open_db(card_home.db_path)) as db:
        facts = card_facts(db, card_home, "secret")
    facts["base_model"] = {"name": "smol", "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct"}
    card = render_model_card({**facts, "repo_id": "alice/secret"}, merged=False)
    assert ModelCard(card).data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert 'AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")' in card
    assert 'PeftModel.from_pretrained(base, "alice/secret")' in card
