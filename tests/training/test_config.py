"""The job config: YAML round-trip, presets, refusals that name the field, and check_config /
queue_job refusing a config that can't work without queueing anything."""

import json
import threading
from contextlib import closing

import pytest
import yaml

from ftapp.errors import Conflict, ValidationError
from ftapp.names import MAX_LORA_RANK
from ftapp.store import jobs as store
from ftapp.store.db import connect
from ftapp.training.config import (
    PRESETS,
    TrainConfig,
    config_from_dict,
    config_from_yaml,
    preset,
)
from ftapp.training.jobs import check_config, queue_job
from tests.helpers import make_version
from tests.training.conftest import tiny_config


def test_yaml_round_trip_keeps_every_field():
    config = TrainConfig(
        dataset_version="qa@v2", base_model="tiny", name="my-run", lora_rank=8, lora_alpha=16,
        lora_dropout=0.1, target_modules="q_proj,v_proj", learning_rate=2e-5, epochs=2.5,
        max_steps=7, batch_size=3, max_length=96, scheduler="linear", seed=42,
        early_stopping_patience=2, assistant_only_loss=False, precision="fp32", threads=1,
    )  # fmt: skip
    text = config.to_yaml()
    assert yaml.safe_load(text)["learning_rate"] == 2e-5
    assert config_from_yaml(text) == config
    assert config_from_dict(config.to_dict()) == config


def test_loose_values_are_coerced_by_field_type():
    config = config_from_yaml(
        "dataset_version: qa@v1\nlearning_rate: 2e-4\nlora_rank: '8'\nepochs: 3\n"
        "assistant_only_loss: 'no'\nmax_steps: 10.0\n"
    )
    assert config.learning_rate == 2e-4 and isinstance(config.learning_rate, float)
    assert config.lora_rank == 8 and config.epochs == 3.0 and config.max_steps == 10
    assert config.assistant_only_loss is False


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_valid_configs(name):
    config = preset(name, "qa@v1", lora_rank=4)
    assert config.dataset_version == "qa@v1" and config.lora_rank == 4
    for field, value in PRESETS[name].items():
        if field != "lora_rank":
            assert getattr(config, field) == value
    assert config_from_yaml(config.to_yaml()) == config


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValidationError, match="preset must be one of quick CPU demo"):
        preset("fastest", "qa@v1")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"dataset_version": "qa@v1", "lora_rnak": 8}, "unknown config field 'lora_rnak'"),
        ({"dataset_version": "qa@v1", "lora_rank": "eight"}, "lora_rank: expected int"),
        ({"dataset_version": "qa@v1", "lora_rank": 8.5}, "lora_rank: expected int"),
        ({"dataset_version": "qa@v1", "learning_rate": "fast"}, "learning_rate: expected float"),
        ({"dataset_version": "qa@v1", "assistant_only_loss": "maybe"},
         "assistant_only_loss: expected bool"),
        ({"dataset_version": "qa@v1", "target_modules": ["q_proj", "v_proj"]},
         "target_modules: expected str"),
        ({"dataset_version": "qa@v1", "lora_rank": MAX_LORA_RANK + 1},
         f"lora_rank: must be between 1 and {MAX_LORA_RANK}"),
        ({"dataset_version": "qa@v1", "lora_rank": 0}, "lora_rank: must be between 1"),
        ({"dataset_version": "qa@v1", "learning_rate": 1.5}, "learning_rate: must be between"),
        ({"dataset_version": "qa@v1", "scheduler": "exponential"}, "scheduler: must be one of"),
        ({"dataset_version": "qa@v1", "max_length": 8}, "max_length: must be between 16"),
        ({"dataset_version": "qa@v1", "epochs": 0}, "epochs: must be above 0"),
        ({"dataset_version": "qa@v1", "precision": "fp8"}, "precision: must be one of"),
        ({"dataset_version": "qa@v1", "early_stopping_patience": 2, "eval_steps": 0},
         "early_stopping_patience: needs eval_steps"),
        ({"lora_rank": 8}, "dataset_version: required"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_naming_the_field(values, message):
    with pytest.raises(ValidationError, match=message):
        config_from_dict(values)


def test_not_a_mapping_and_not_yaml_are_refused():
    with pytest.raises(ValidationError, match="mapping of field: value"):
        config_from_yaml("- just\n- a list\n")
    with pytest.raises(ValidationError, match="not valid YAML"):
        config_from_yaml("dataset_version: [unclosed\n")


def test_queue_job_names_the_job_and_places_its_files(db, settings, tiny, version):
    job = queue_job(db, settings, tiny_config(version), "alice")
    assert job.status == "queued" and job.attempts == 0 and job.created_by == "alice"
    assert job.name == f"qa-v1-job{job.id}"
    assert job.config["name"] == job.name and job.config["base_model"] == "tiny"
    assert (
        json.loads(db["jobs"].get(job.id)["config_json"])
        == tiny_config(version, name=job.name).to_dict()
    )
    assert job.output_dir == str(settings.adapters_dir / f"job-{job.id}")
    assert job.log_path == str(settings.logs_dir / f"job-{job.id}.log")
    named = queue_job(db, settings, tiny_config(version, name="mine"), "alice")
    assert named.name == "mine"


def test_check_config_refuses_and_queues_nothing(db, settings, tiny, version, tmp_path,
                                                 count_tokens):  # fmt: skip
    empty_train = make_version(db, tmp_path, count_tokens, name="small", n=2,
                               ratios=(0.2, 0.4, 0.4))  # fmt: skip
    queue_job(db, settings, tiny_config(version, name="taken"), "alice")
    db["model_variants"].insert({"name": "a-variant", "kind": "adapter", "base_model": "tiny",
                                 "path": "/x", "created_at": "2024-01-01"})  # fmt: skip
    before = db["jobs"].count
    refusals = [
        (tiny_config("nosuch@v1"), ValidationError, "dataset_version: .*nosuch"),
        (tiny_config("qa@v9"), ValidationError, "dataset_version: .*"),
        (tiny_config(empty_train), ValidationError,
         "dataset_version: small@v1 has an empty train split"),
        (tiny_config(version, base_model="no-such-model"), ValidationError,
         "base_model: no base model named 'no-such-model'"),
        (tiny_config(version, name="taken"), Conflict, "name: 'taken' is already used"),
        (tiny_config(version, name="a-variant"), Conflict, "name: 'a-variant' is already used"),
        (tiny_config(version, name="has space"), ValidationError, "'has space': use 1-80"),
    ]  # fmt: skip
    for config, error, message in refusals:
        with pytest.raises(error, match=message):
            check_config(db, settings, config)
        with pytest.raises(error, match=message):
            queue_job(db, settings, config, "alice")
    assert db["jobs"].count == before == 1
    assert store.list_jobs(db)[0].name == "taken"


def test_a_generated_name_never_takes_a_name_given_by_hand(db, settings, tiny, version):
    by_hand = queue_job(db, settings, tiny_config(version, name="qa-v1-job2"), "alice")
    generated = queue_job(db, settings, tiny_config(version), "alice")
    assert (by_hand.id, generated.id) == (1, 2)
    assert generated.name == "qa-v1-job2-2" == generated.config["name"]


def test_two_requests_for_one_name_queue_one_job(db, settings, tiny, version):
    racers = 6
    barrier = threading.Barrier(racers)
    outcomes = []

    def queue_named():
        with closing(connect(settings.db_path)) as own:
            barrier.wait()
            try:
                outcomes.append(queue_job(own, settings, tiny_config(version, name="same"), "u"))
            except Conflict as exc:
                outcomes.append(exc)

    threads = [threading.Thread(target=queue_named) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == racers
    assert sum(1 for outcome in outcomes if isinstance(outcome, Conflict)) == racers - 1
    assert [job.name for job in store.list_jobs(db)] == ["same"]
