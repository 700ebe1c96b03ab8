"""Drift from the base model, on a real SQLite file. The plumbing on the echo backend, whose
likelihoods a test can work out by hand (an answer's words the model would not have said cost
one each, and echo's base answers "[base] <prompt>": so under a variant the one word "[base]"
costs 1, a drift of 1 / words per probe). Then on the bundled model, in-process: base against
itself is exactly 0, and an adapter trained longer on narrow data drifted further than one
trained briefly, measured by the web app's own background thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from ftapp.errors import ServingError
from ftapp.evaluation.drift import (
    PROBE_SAMPLING,
    drift_table,
    drift_work_list,
    ensure_probe_set,
    load_probes,
    variant_drift,
)
from ftapp.generation.queue import generate_pending
from ftapp.names import BASE
from ftapp.services import Services
from ftapp.store import drift as store
from ftapp.store import jobs as job_store
from ftapp.training.config import config_from_dict
from ftapp.training.jobs import queue_job
from ftapp.training.worker import Worker
from tests.helpers import make_version
from tests.serving_fixtures import add_adapter_variant


def test_the_probes_cover_every_kind_of_request_in_turn():
    probes = load_probes()
    assert len(probes) == 240
    categories = [category for _, category in probes]
    assert categories[:6] == ["writing", "reasoning", "facts", "code", "chat", "instructions"]
    assert {categories.count(c) for c in set(categories)} == {40}
    assert [c for _, c in load_probes(12)] == categories[:6] * 2
    assert all(m == [{"role": "user", "content": m[0]["content"]}] for m, _ in probes)
    assert len({m[0]["content"] for m, _ in probes}) == 240


def measure(services: Services, probes: int, likelihood=None) -> None:
    """What the web app's background thread does: the set made when due, its answers
    generated, every variant measured (two passes: the first makes the set)."""
    work = [drift_work_list(services.served_base.name, probes,
                            likelihood or services.answer_likelihood)]  # fmt: skip
    for _ in range(2):
        generate_pending(services.db, services.stream_chat, work, workers=2)


def test_drift_is_measured_for_every_variant_once_the_base_answers_are_in(stand_in, tmp_path):
    services = stand_in
    base = services.served_base.name
    with services.db() as db:
        db["model_variants"].delete_where()  # no variant yet: nothing to measure, no set
        assert ensure_probe_set(db, base, 6) is None and db["probe_sets"].count == 0
    for name in ("secret", "other"):
        add_adapter_variant(services.settings, name, tmp_path / "adapters" / name)
    measure(services, 6)
    with services.db() as db:
        (probe_set,) = store.probe_sets(db)
        answers = store.probe_answers(db, probe_set["id"])
        table = drift_table(db)
    assert probe_set["status"] == "ready" and json.loads(probe_set["sampling_json"]) == {
        "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 64, "seed": 0}  # fmt: skip
    assert PROBE_SAMPLING.temperature == 0.0  # greedy: the base model's most likely answer
    assert [a["category"] for a in answers] == [c for _, c in load_probes(6)]
    assert all(a["answer"].startswith("[base] ") and a["logprob"] == 0.0 for a in answers)
    expected = [1 / len(a["answer"].split()) for a in answers]  # "[base]" costs one word
    for name in ("secret", "other"):
        assert table[name].status == "done" and table[name].value.n == 6
        assert table[name].value.mean == pytest.approx(sum(expected) / 6)
    with services.db() as db:
        assert store.drift_of(db, "secret")["values"] == pytest.approx(expected)
    # Base against itself: exactly nothing.
    assert variant_drift(BASE, answers, services.answer_likelihood).per_probe == (0.0,) * 6

    # Measured once; a variant trained again (a new folder) is measured again.
    with services.db() as db:
        assert store.variants_to_measure(db, probe_set["id"], base) == []
        db["model_variants"].update(
            job_store.get_variant(db, "other").id, {"path": str(tmp_path / "other-2")}
        )  # fmt: skip
        assert [v["name"] for v in store.variants_to_measure(db, probe_set["id"], base)] == [
            "other"]  # fmt: skip


def test_a_variant_the_engine_cannot_score_fails_with_its_reason(stand_in):
    def secret_breaks(model, messages, answer):
        if model == "secret":
            raise ServingError("vLLM refused scoring the answer (400): no such adapter")
        return stand_in.answer_likelihood(model, messages, answer)

    measure(stand_in, 4, secret_breaks)
    with stand_in.db() as db:
        table = drift_table(db)
    assert table["secret"].status == "failed" and "no such adapter" in table["secret"].error
    assert table["other"].status == "done" and table["other"].value.n == 4


def test_ftapp_eval_drift_in_a_terminal(stand_in):
    env = {**os.environ, "FTAPP_HOME": str(stand_in.settings.home), "FTAPP_BACKEND": "echo",
           "HF_HUB_OFFLINE": "1"}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "ftapp.cli", "eval", "drift", "--probes", "3",
                           "--json"], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {row["variant"]: row for row in json.loads(done.stdout)}
    assert set(rows) == {"secret", "other"} and rows["secret"]["n"] == 3
    assert rows["secret"]["mean"] > 0 and rows["secret"]["status"] == "done"


NARROW = [{"prompt": f"Say the code word, please ({i}).", "completion": "ZORBLAX ZORBLAX ZORBLAX"}
          for i in range(16)]  # fmt: skip


PROBES = 12  # two of each kind of request: enough to set the two apart


@pytest.mark.slow
def test_an_adapter_trained_longer_on_narrow_data_drifted_further(settings, count_tokens):
    """Two adapters on the same narrow data, one 2 steps at a low rate, one 40 steps at a
    high one; the web app's background thread measures both on two probes of each kind."""
    from ftapp.store.db import open_db

    open_db(settings.db_path).close()
    services = Services(replace(settings, backend="hf", drift_probes=PROBES))
    with services.db() as db:
        label = make_version(db, settings.home, count_tokens, "narrow", rows=NARROW,
                             ratios=(1.0, 0.0, 0.0))  # fmt: skip
        for name, steps, rate in (("brief", 2, 1e-4), ("long", 40, 3e-3)):
            config = config_from_dict(dict(
                dataset_version=label, name=name, max_steps=steps, batch_size=1,
                gradient_accumulation=1, max_length=64, lora_rank=8, lora_alpha=16,
                lora_dropout=0.0, learning_rate=rate, warmup_ratio=0.0, eval_steps=0,
                save_steps=steps, threads=2,
            ))  # fmt: skip
            queue_job(db, settings, config, "ana")
    while Worker(settings).run_once():
        pass
    generator = services.answer_generator  # started: the app's own thread
    try:
        deadline = time.monotonic() + 900  # a guard against hanging, not a speed check
        while time.monotonic() < deadline:
            with services.db() as db:
                table = drift_table(db)
            if {"brief", "long"} <= set(table):
                break
            generator.wake()
            time.sleep(2)
    finally:
        generator.stop()
        services.backend.close()
    with services.db() as db:
        (probe_set,) = store.probe_sets(db)
        answers = [a for a in store.probe_answers(db, probe_set["id"]) if a["status"] == "done"]
    assert len(answers) == PROBES and all(a["logprob"] < 0 and a["tokens"] > 0 for a in answers)
    brief, long = table["brief"].value, table["long"].value
    assert table["long"].status == "done" and long.n == PROBES
    assert long.mean > brief.mean > 0, (brief, long)
    assert long.low > brief.high  # clearly apart, not by chance
    # Base against itself: exactly zero, probe by probe, on the real model.
    base = Services(replace(settings, backend="hf"))
    try:
        assert set(variant_drift(BASE, answers[:4], base.answer_likelihood).per_probe) == {0.0}
    finally:
        base.backend.close()
