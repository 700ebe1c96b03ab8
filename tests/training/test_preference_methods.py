"""DPO, ORPO and KTO jobs on the tiny model, through the queue and a real worker child: each
trains with TRL's trainer, reports its rewards as progress rows, and leaves an adapter that
records its method; a DPO job goes on training an SFT adapter and leaves only the trained
adapter (not TRL's frozen reference copy). check_config refuses what can't work."""

import json
from pathlib import Path

import pytest

from ftapp.errors import ValidationError
from ftapp.records import JobStatus
from ftapp.store import jobs as store
from ftapp.training.jobs import check_config, queue_job
from ftapp.training.worker import Worker
from tests.helpers import make_version
from tests.training.conftest import preference_rows, tiny_config


@pytest.fixture
def prefs(db, tmp_path, count_tokens) -> str:
    return make_version(db, tmp_path, count_tokens, name="prefs", rows=preference_rows(10))


def run_job(db, settings, config):
    job = queue_job(db, settings, config, "alice")
    assert Worker(settings).run_once()
    job = store.get_job(db, job.id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job


@pytest.mark.parametrize("method", ["dpo", "orpo", "kto"])
def test_each_preference_method_trains_and_reports_its_rewards(db, settings, tiny, prefs, method):
    job = run_job(db, settings, tiny_config(prefs, method=method))
    assert job.step == job.total_steps == 4

    train = [m for m in store.job_metrics(db, job.id) if m["kind"] == "train"]
    evals = [m for m in store.job_metrics(db, job.id) if m["kind"] == "eval"]
    assert [m["step"] for m in train] == [1, 2, 3, 4] and [m["step"] for m in evals] == [2, 4]
    for row in train + evals:
        assert row["rewards_chosen"] is not None and row["rewards_rejected"] is not None
        assert row["rewards_margin"] == pytest.approx(
            row["rewards_chosen"] - row["rewards_rejected"], abs=1e-4
        )
    if method != "kto":  # pairs give an accuracy; KTO's answers are unpaired
        assert all(0 <= row["rewards_accuracy"] <= 1 for row in train + evals)

    adapter = next(v for v in store.list_variants(db, job.id) if v.kind == "adapter")
    meta = json.loads((Path(adapter.path) / "ftapp-adapter.json").read_text())
    assert meta["method"] == method and meta["start_adapter"] is None
    assert meta["config"]["method"] == method


def test_dpo_goes_on_training_an_sft_adapter(db, settings, tiny, prefs, tmp_path, count_tokens):
    from safetensors.torch import load_file

    sft = run_job(db, settings, tiny_config(make_version(db, tmp_path, count_tokens), max_steps=2))
    start = next(v for v in store.list_variants(db, sft.id) if v.kind == "adapter")
    dpo = run_job(db, settings, tiny_config(prefs, method="dpo", start_adapter=start.name,
                                            lora_rank=8, lora_alpha=16))  # fmt: skip

    adapter = next(v for v in store.list_variants(db, dpo.id) if v.kind == "adapter")
    folder = Path(adapter.path)
    # The starting adapter's LoRA settings are kept (rank 4), not the config's rank 8.
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 4
    assert not (folder / "ref").exists()  # TRL's frozen copy of the start is not the result
    meta = json.loads((folder / "ftapp-adapter.json").read_text())
    assert meta["start_adapter"] == {"name": start.name, "path": start.path}
    before = load_file(str(Path(start.path) / "adapter_model.safetensors"))
    after = load_file(str(folder / "adapter_model.safetensors"))
    assert before.keys() == after.keys()
    assert any(not before[k].equal(after[k]) for k in before), "DPO changed nothing"


def test_check_config_refuses_what_the_method_cannot_train(
    db, settings, tiny, prefs, tmp_path, count_tokens
):
    sft_version = make_version(db, tmp_path, count_tokens)
    cases = [
        (tiny_config(prefs), "method: prefs@v1 is preference data"),
        (tiny_config(sft_version, method="dpo"), "method: dpo learns from preference data"),
        (tiny_config(sft_version, method="kto"), "method: kto learns from preference data"),
        (tiny_config(prefs, method="dpo", start_adapter="nope"), "start_adapter: no model"),
    ]
    labelled = [{"prompt": f"Say {i}", "completion": f"{i}.", "label": i % 2 == 0}
                for i in range(8)]  # fmt: skip
    kto_only = make_version(db, tmp_path, count_tokens, name="kto", rows=labelled)
    cases.append((tiny_config(kto_only, method="orpo"), "method: orpo learns from pairs"))
    store.add_variant(db, {"name": "other-base-adapter", "kind": "adapter", "base_model": "x",
                           "path": str(tmp_path), "job_id": None, "step": None,
                           "eval_loss": None, "is_best": 0})  # fmt: skip
    elsewhere = tiny_config(prefs, method="dpo", start_adapter="other-base-adapter")
    cases.append((elsewhere, "start_adapter: 'other-base-adapter' was trained on x, not on tiny"))
    for config, message in cases:
        with pytest.raises(ValidationError, match=message):
            check_config(db, settings, config)
    assert check_config(db, settings, tiny_config(kto_only, method="kto"))
