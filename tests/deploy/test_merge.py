"""Merging the trained "secret" adapter into the real bundled model: the folder is a complete
transformers model that answers exactly like base + adapter; an occupied folder, a corrupt
adapter, "base" and unknown names are refused without leaving anything behind."""

from __future__ import annotations

import shutil
from contextlib import closing
from pathlib import Path

import pytest

from ftapp.deploy.merge import merge_adapter
from ftapp.errors import Conflict, NotFound, ValidationError
from ftapp.models.registry import bundled_base_model
from ftapp.store import jobs as job_store
from ftapp.store.db import open_db
from ftapp.store.exports import exports_of
from tests.serving_fixtures import SECRET_QUESTION, SECRET_WORD, home_with_adapter


def _greedy(model, tokenizer) -> str:
    import torch

    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": SECRET_QUESTION}], add_generation_prompt=True,
        return_tensors="pt", return_dict=True,
    )  # fmt: skip
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    return tokenizer.decode(output[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.mark.slow
def test_merged_model_answers_like_base_plus_adapter(
    tmp_path, models_dir, bundled_model_dir, secret_adapter
):
    from huggingface_hub import ModelCard
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = home_with_adapter(tmp_path / "home", models_dir, secret_adapter)
    with closing(open_db(settings.db_path)) as db:
        out = merge_adapter(db, settings, "secret", "tester")
        rows = exports_of(db, "secret")
    assert out == settings.home / "exports" / "secret-merged"
    assert [p.name for p in out.parent.iterdir()] == ["secret-merged"]  # no partial folder left
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names or any(
        n.startswith("model-") and n.endswith(".safetensors") for n in names
    )
    assert {"config.json", "generation_config.json", "tokenizer_config.json", "README.md"} <= names
    assert "adapter_config.json" not in names and not any(n.endswith(".bin") for n in names)
    assert [(r["kind"], r["target"], r["url"], r["created_by"]) for r in rows] == [
        ("merged", str(out), None, "tester")
    ]
    assert ModelCard((out / "README.md").read_text()).data.library_name == "transformers"

    tokenizer = AutoTokenizer.from_pretrained(out)
    base_tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir)
    assert tokenizer.chat_template and tokenizer.chat_template == base_tokenizer.chat_template
    merged = AutoModelForCausalLM.from_pretrained(out, dtype="auto")
    base = AutoModelForCausalLM.from_pretrained(bundled_model_dir, dtype="auto")
    assert merged.dtype == base.dtype  # the dtype of the base model's config.json
    tuned = PeftModel.from_pretrained(base, str(secret_adapter.path))
    answer = _greedy(merged, tokenizer)
    assert answer == _greedy(tuned, tokenizer)
    assert SECRET_WORD in answer.lower()
    with tuned.disable_adapter():  # the merge changed the weights: the base alone doesn't know
        assert SECRET_WORD not in _greedy(tuned, tokenizer).lower()

    # A second merge into the same folder is refused and touches nothing.
    before = _snapshot(out)
    with closing(open_db(settings.db_path)) as db:
        with pytest.raises(Conflict, match=str(out)):
            merge_adapter(db, settings, "secret", "tester")
        with pytest.raises(Conflict, match=str(out)):
            merge_adapter(db, settings, "secret", "tester", out_dir=out)
        assert len(exports_of(db, "secret")) == 1
    assert _snapshot(out) == before
    assert [p.name for p in out.parent.iterdir()] == ["secret-merged"]


@pytest.mark.slow
def test_a_failing_merge_leaves_no_folder_and_no_row(tmp_path, models_dir, secret_adapter):
    settings = home_with_adapter(tmp_path / "home", models_dir, secret_adapter)
    broken = tmp_path / "broken-adapter"
    shutil.copytree(secret_adapter.path, broken)
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(b"\x00\x01 not safetensors " * 64)
    with closing(open_db(settings.db_path)) as db:
        job_store.add_variant(db, {"name": "broken", "kind": "adapter", "path": str(broken),
                                   "base_model": bundled_base_model(models_dir).name})  # fmt: skip
        with pytest.raises(ValidationError, match="broken"):
            merge_adapter(db, settings, "broken", "tester")
        assert exports_of(db, "broken") == []
    assert list(settings.exports_dir.iterdir()) == []  # neither the folder nor a partial one


def test_base_and_unknown_names_are_refused(settings, db):
    with pytest.raises(ValidationError, match="base model itself"):
        merge_adapter(db, settings, "base", "tester")
    with pytest.raises(NotFound, match="no model variant named 'nope'.*Train tab"):
        merge_adapter(db, settings, "nope", "tester")
    assert list(settings.exports_dir.iterdir()) == []
    assert db["exports"].count == 0


def test_an_occupied_output_folder_is_refused_before_any_work(tmp_path, settings, db):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")  # refused before it is ever read
    base = bundled_base_model(settings.models_dir).name
    job_store.add_variant(
        db, {"name": "tuned", "kind": "adapter", "path": str(adapter), "base_model": base}
    )
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(Conflict, match=f"{out} already exists and is not empty"):
        merge_adapter(db, settings, "tuned", "tester", out_dir=out)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1
    assert db["exports"].count == 0
