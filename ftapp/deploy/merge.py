"""Merging a LoRA adapter into its base model, for tools that load a plain transformers model
and don't take adapters (llama.cpp converters, some inference servers).

`merge_adapter` loads the base model on the CPU in the dtype of its config.json, applies the
adapter with peft, folds it into the weights and writes a complete model folder: safetensors
weights, config, tokenizer with its chat template, generation config and a model card. It
writes into a hidden sibling folder and renames it at the end, so a failure never leaves a
half-written model where a tool would pick it up.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import sqlite_utils

from ftapp.deploy.model_card import card_facts, render_model_card
from ftapp.errors import Conflict, NotFound, ValidationError
from ftapp.models.registry import BaseModel, get_base_model
from ftapp.names import BASE
from ftapp.records import ModelVariant
from ftapp.settings import Settings
from ftapp.store import jobs as job_store
from ftapp.store.exports import record_export

log = logging.getLogger(__name__)


def merge_adapter(
    db: sqlite_utils.Database,
    settings: Settings,
    model_name: str,
    user: str,
    out_dir: Path | None = None,
    *,
    record: bool = True,
) -> Path:
    """Write variant `model_name` merged into its base model to `out_dir` (default
    FTAPP_HOME/exports/NAME-merged) and return that folder. `out_dir` may exist only if it is
    empty. `record=False` skips the `exports` row (a Hub push merges into a temporary folder
    and records the push instead)."""
    variant, base = variant_and_base(db, settings, model_name)
    out = Path(out_dir) if out_dir else default_merge_dir(settings, variant.name)
    check_free(out)
    card = render_model_card(card_facts(db, settings, variant.name), merged=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        _write_merged(variant, base, work)
        (work / "README.md").write_text(card, encoding="utf-8")
        _move_into_place(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if record:
        record_export(db, variant.name, "merged", str(out), None, user)
    log.info("merged %s into %s", variant.name, out)
    return out


def default_merge_dir(settings: Settings, model_name: str) -> Path:
    # Checkpoint names hold a slash ("job/step-12"); one folder per variant, not a subfolder.
    return settings.exports_dir / f"{model_name.replace('/', '--')}-merged"


def variant_and_base(
    db: sqlite_utils.Database, settings: Settings, model_name: str
) -> tuple[ModelVariant, BaseModel]:
    """The adapter or checkpoint named `model_name` and its base model, or a clear error
    saying what to pick instead."""
    name = (model_name or "").strip()
    if name == BASE:
        raise ValidationError(
            "'base' is the base model itself: there is no adapter to merge or push. Pick an "
            "adapter or checkpoint (see `ftapp jobs show ID` or the Train tab)."
        )
    try:
        variant = job_store.get_variant(db, name)
    except NotFound:
        raise NotFound(
            f"no model variant named {name!r}: pick an adapter or checkpoint listed by "
            "`ftapp jobs show ID` or in the Train tab"
        ) from None
    adapter = Path(variant.path)
    if not (adapter / "adapter_config.json").is_file():
        raise NotFound(f"the adapter of {name!r} is missing: no adapter_config.json in {adapter}")
    return variant, get_base_model(db, settings.models_dir, variant.base_model)


def check_free(out: Path) -> None:
    """A Conflict unless `out` is free for a merged model: missing, or an empty folder."""
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise Conflict(
            f"{out} already exists and is not empty: choose another output folder or remove "
            "that one first"
        )


def _write_merged(variant: ModelVariant, base: BaseModel, folder: Path) -> None:
    """The merged weights, config, tokenizer and generation config, written into `folder`."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    adapter = Path(variant.path)
    try:
        # dtype "auto": the dtype in the base model's config.json. Loaded on the CPU so a GPU
        # busy with vLLM or training is left alone.
        model = AutoModelForCausalLM.from_pretrained(str(base.path), dtype="auto")
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    except Exception as exc:  # a corrupt or mismatched adapter fails in library-specific ways
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValidationError(
            f"can't apply the adapter of {variant.name!r} ({adapter}) to {base.name}: {reason}"
        ) from exc
    # transformers 5 always writes safetensors (and ignores the flag); 4.x needs it.
    model.save_pretrained(str(folder), safe_serialization=True)
    # The adapter folder holds the tokenizer training saved (with the inference chat
    # template); an adapter copied without it falls back to the base model's.
    has_tokenizer = (adapter / "tokenizer_config.json").is_file()
    AutoTokenizer.from_pretrained(str(adapter if has_tokenizer else base.path)).save_pretrained(
        str(folder)
    )
    if (base.path / "generation_config.json").is_file():
        GenerationConfig.from_pretrained(str(base.path)).save_pretrained(str(folder))


def _move_into_place(work: Path, out: Path) -> None:
    """Rename the finished folder to `out` (an empty `out` is replaced; rename is atomic)."""
    try:
        os.replace(work, out)
    except OSError:
        # Something was put in `out` while merging: leave it alone and say so.
        raise Conflict(
            f"{out} was filled while merging: choose another output folder or remove it"
        ) from None
