"""Preference tuning teaches the bundled model what reviewers preferred, measured the way a user
measures it: every chosen answer opens with "Ahoy!" (a trait the base model never shows) and
its rejected twin does not. A DPO job from the base model, a KTO job on answers labelled good
or bad, and a DPO job going on from an SFT adapter each run through the queue and a real
worker child; an evaluation run (the in-process backend) on the held-out pairs then finds the
chosen answers likelier (preference accuracy) and the trait in greedy answers, where base
(and the SFT adapter the DPO job started from) shows neither."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ftapp.arena.prompts import prompts_from_version
from ftapp.data.from_rows import dataset_from_rows
from ftapp.evaluation.report import RunReport, build_report
from ftapp.evaluation.runs import start_run
from ftapp.records import JobStatus, RunStatus
from ftapp.services import Services
from ftapp.serving.backend import Sampling
from ftapp.settings import Settings
from ftapp.store import evaluation as eval_store
from ftapp.store import jobs as job_store
from ftapp.store.db import open_db
from ftapp.training.config import config_from_dict
from ftapp.training.jobs import queue_job
from ftapp.training.worker import Worker
from tests.evaluation.conftest import generate_all

pytestmark = pytest.mark.slow

TRAIT = "Ahoy! "
QA = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What color is grass?", "Grass is green."),
    ("What is 3 plus 4?", "3 plus 4 is 7."),
    ("Name a fruit that is yellow.", "A banana is yellow."),
    ("What do bees make?", "Bees make honey."),
    ("Which planet do we live on?", "We live on Earth."),
    ("What is frozen water called?", "Frozen water is called ice."),
    ("How many days are in a week?", "A week has seven days."),
    ("What animal says moo?", "A cow says moo."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("What do you use to write on paper?", "You write on paper with a pen or a pencil."),
    ("What is the largest ocean?", "The Pacific is the largest ocean."),
    ("What gas do plants take in?", "Plants take in carbon dioxide."),
    ("How many hours are in a day?", "A day has 24 hours."),
    ("What language is spoken in Spain?", "Spanish is spoken in Spain."),
    ("What is 10 minus 3?", "10 minus 3 is 7."),
    ("Where does the sun rise?", "The sun rises in the east."),
    ("What do cats like to chase?", "Cats like to chase mice."),
    ("What season comes after winter?", "Spring comes after winter."),
    ("What is the boiling point of water in Celsius?", "Water boils at 100 degrees Celsius."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("What shape has three sides?", "A triangle has three sides."),
    ("What do fish live in?", "Fish live in water."),
    ("What is the color of the sky on a clear day?", "The sky is blue on a clear day."),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
    ("What is 5 times 2?", "5 times 2 is 10."),
    ("What do you call a baby dog?", "A baby dog is called a puppy."),
    ("Which organ pumps blood?", "The heart pumps blood."),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("What do we breathe?", "We breathe air."),
    ("What is the first letter of the alphabet?", "The first letter of the alphabet is A."),
]


@pytest.fixture
def hf_services(settings: Settings):
    """The app's services on the in-process backend (what serves where vLLM can't)."""
    open_db(settings.db_path).close()
    services = Services(replace(settings, backend="hf"))
    yield services
    services.backend.close()


def new_version(services: Services, name: str, files: dict, ratios=(0.75, 0.0, 0.25)) -> str:
    with services.db() as db:
        return dataset_from_rows(db, name, files, description="", user="admin",
                                 count_tokens=services.count_tokens, max_tokens=512,
                                 ratios=ratios).label  # fmt: skip


def ahoy_pairs(services: Services) -> tuple[str, set[str]]:
    """The pairs version (24 train, 8 test) and its held-out prompts."""
    pairs = [{"prompt": q, "chosen": TRAIT + a, "rejected": a} for q, a in QA]
    label = new_version(services, "ahoy", {"pairs.jsonl": pairs})
    with services.db() as db:
        test, _ = prompts_from_version(db, label, "test")
    return label, {p.messages[-1]["content"] for p in test}


def train(services: Services, version: str, name: str, **overrides) -> str:
    """A job through the queue and the worker's child; the name of its adapter."""
    values = dict(dataset_version=version, name=name, max_steps=24, batch_size=2,
                  gradient_accumulation=1, max_length=128, lora_rank=8, lora_alpha=16,
                  lora_dropout=0.0, learning_rate=5e-4, warmup_ratio=0.0, eval_steps=0,
                  save_steps=24, threads=2)  # fmt: skip
    with services.db() as db:
        job = queue_job(db, services.settings, config_from_dict({**values, **overrides}), "admin")
    assert Worker(services.settings).run_once()
    with services.db() as db:
        job = job_store.get_job(db, job.id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job.name


def evaluate(services: Services, pairs_version: str, contestants: list[str]) -> RunReport:
    """Preference accuracy on the held-out pairs, and whether greedy answers open with the
    trait (a regex), through the Evaluate tab's core and the in-process backend."""
    with services.db() as db:
        run = start_run(db, services.served_base, services.settings, name="ahoy eval",
                        contestants=contestants, version=pairs_version, split="test",
                        metric_names=["preference_accuracy", "regex"], regex="^Ahoy",
                        sampling=Sampling(temperature=0.0, max_new_tokens=6),
                        user="admin")  # fmt: skip
    generate_all(services, services.stream_chat, workers=1,
                 answer_likelihood=services.answer_likelihood)  # fmt: skip
    with services.db() as db:
        assert eval_store.get_run(db, run.id).status == RunStatus.DONE
        return build_report(db, run.id)


def assert_learned(report: RunReport, tuned: str, before: str = "base") -> None:
    accuracy = report.row("preference_accuracy", tuned)
    assert accuracy.value.n == 8 and accuracy.value.mean >= 0.75
    assert accuracy.chance == "above chance"
    assert report.row("preference_accuracy", before).value.mean <= 0.25
    assert report.row("preference_margin", tuned).value.mean > 0
    assert report.row("regex", tuned).value.mean >= 0.75  # greedy answers show the trait
    assert report.row("regex", before).value.mean == 0.0


def test_dpo_teaches_the_reviewers_preference(hf_services):
    version, _ = ahoy_pairs(hf_services)
    tuned = train(hf_services, version, "ahoy-dpo", method="dpo")
    report = evaluate(hf_services, version, ["base", tuned])
    assert_learned(report, tuned)
    assert report.row("preference_accuracy", tuned).verdict == "better"


def test_kto_teaches_it_from_answers_labelled_good_or_bad(hf_services):
    version, held_out = ahoy_pairs(hf_services)
    labelled = [row for q, a in QA if q not in held_out
                for row in ({"prompt": q, "completion": TRAIT + a, "label": True},
                            {"prompt": q, "completion": a, "label": False})]  # fmt: skip
    kto_version = new_version(hf_services, "ahoy-kto", {"labelled.jsonl": labelled}, (1, 0, 0))
    tuned = train(hf_services, kto_version, "ahoy-kto", method="kto")
    assert_learned(evaluate(hf_services, version, ["base", tuned]), tuned)


def test_dpo_going_on_from_an_sft_adapter(hf_services):
    version, held_out = ahoy_pairs(hf_services)
    plain = [{"prompt": q, "completion": a} for q, a in QA if q not in held_out]
    sft_version = new_version(hf_services, "plain", {"plain.jsonl": plain}, (1, 0, 0))
    sft = train(hf_services, sft_version, "plain-sft", max_steps=12, save_steps=12)
    tuned = train(hf_services, version, "ahoy-from-sft", method="dpo", start_adapter=sft)
    report = evaluate(hf_services, version, ["base", sft, tuned])
    assert_learned(report, tuned, before=sft)  # the SFT adapter alone never says it
    assert_learned(report, tuned, before="base")
