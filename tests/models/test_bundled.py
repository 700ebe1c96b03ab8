"""Preparing the bundled SmolLM2 model from its GGUF file into a standard folder."""

import pytest

from ftapp.models.bundled import MARKER_FILE, is_prepared, prepare_bundled_model


@pytest.mark.slow
def test_prepare_builds_a_standard_folder_that_answers(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = prepare_bundled_model(tmp_path / "models")
    names = {path.name for path in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", MARKER_FILE} <= names
    assert "quantization_config" not in (folder / "config.json").read_text()

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert tokenizer.chat_template
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )  # fmt: skip
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer

    # Idempotent: a prepared folder is reused as it is.
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert prepare_bundled_model(tmp_path / "models") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_interrupted_preparation_is_not_taken_for_done(tmp_path):
    partial = tmp_path / "models" / "SmolLM2-135M-Instruct"
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")
    assert not is_prepared(tmp_path / "models")
