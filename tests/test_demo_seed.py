"""The demo's seed on a fresh home: the sample dataset, its frozen version, a prompt variant and
the Arena pool, written once; and the sample file itself (clean, short, on-task)."""

import json
from dataclasses import replace

from ftapp.data.importer import import_file
from ftapp.demo import (
    DATASET,
    OPENING,
    PROMPT_VARIANT,
    SAMPLE_FILE,
    SIGN_OFF,
    SYSTEM_PROMPT,
    seed_demo,
)
from ftapp.records import Contestant
from ftapp.store import arena as arena_store
from ftapp.store import versions as version_store
from ftapp.store.datasets import get_dataset, list_datasets
from ftapp.training.config import preset
from ftapp.training.jobs import check_config
from tests.helpers import make_version, table_counts


def sample_rows() -> list[dict]:
    return [json.loads(line) for line in SAMPLE_FILE.read_text(encoding="utf-8").splitlines()]


def seeded_counts(db) -> dict[str, int]:
    return {**table_counts(db), "prompt_variants": db["prompt_variants"].count,
            "arena_pool": db["arena_pool"].count}  # fmt: skip


def test_seed_writes_the_dataset_version_variant_and_pool_once(db, settings, services):
    said = seed_demo(db, settings, services.served_base)
    assert "demo-support@v1" in said and PROMPT_VARIANT in said

    assert [d["name"] for d in list_datasets(db)] == [DATASET]
    [version] = version_store.list_versions(db, get_dataset(db, DATASET).id)
    assert version.version == 1 and version.created_by == "demo"
    assert version.n_examples == len(sample_rows())  # every example accepted and frozen
    assert version.n_train > 0 and version.n_test > 0 and version.n_validation > 0
    assert arena_store.list_prompt_variants(db) == [
        Contestant(PROMPT_VARIANT, "base", SYSTEM_PROMPT)
    ]
    assert arena_store.pool(db) == ["base", PROMPT_VARIANT]

    before = seeded_counts(db)
    assert "nothing to do" in seed_demo(db, settings, services.served_base)
    assert seeded_counts(db) == before


def test_seed_leaves_a_database_with_data_alone(db, settings, services, tmp_path, count_tokens):
    make_version(db, tmp_path, count_tokens)
    before = seeded_counts(db)
    assert "nothing to do" in seed_demo(db, settings, services.served_base)
    assert seeded_counts(db) == before and arena_store.pool(db) == []


def test_the_seeded_version_trains_within_the_demo_limits(db, settings, services):
    seed_demo(db, settings, services.served_base)
    demo = replace(settings, demo=True)
    # The preset the CPU demo starts with is accepted as it is.
    checked = check_config(db, demo, preset("quick CPU demo", f"{DATASET}@v1"))
    assert checked.version.n_train <= demo.demo_max_examples


def test_the_sample_file_imports_cleanly_and_fits_the_cpu_preset(db, count_tokens):
    # 256 tokens: the max_length of the "quick CPU demo" preset, so nothing gets cut.
    report = import_file(db, SAMPLE_FILE, "sample", count_tokens=count_tokens, max_tokens=256,
                         on_error="abort")  # fmt: skip
    assert report.problems == [] and report.duplicates == []
    assert report.n_imported == report.n_rows == len(sample_rows())


def test_every_sample_reply_opens_and_signs_off_the_house_way():
    rows = sample_rows()
    # Enough to decide on: the tour's 60/10/30 split leaves 36 test prompts, more than an
    # evaluation needs to show a medium difference (evaluation/sizing.py), and few enough to
    # stay within the demo's 200-example limit.
    assert 100 <= len(rows) <= 150
    questions = set()
    for row in rows:
        user, assistant = row["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert assistant["content"].startswith(OPENING + " ")
        assert assistant["content"].endswith(" " + SIGN_OFF)
        assert OPENING == "Thanks for reaching out!" and SIGN_OFF == "— Spoke & Chain support"
        assert len(assistant["content"]) < 400  # short answers, 1-3 sentences
        questions.add(user["content"])
    assert len(questions) == len(rows)
