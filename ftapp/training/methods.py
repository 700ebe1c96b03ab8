"""The training methods: what each one learns from in a frozen version, and which of TRL's
trainers does it, with which of its settings.

- sft: the conversations (SFTTrainer, packed, loss on the assistant turns).
- dpo: the pairs, prompt with a chosen and a rejected answer (DPOTrainer).
- orpo: the pairs (TRL's ORPOTrainer, in trl.experimental.orpo since TRL 1.0).
- kto: answers labelled good or bad; a pair gives its chosen answer as good and its rejected
  one as bad (KTOTrainer).

Each row is in TRL's own dataset format (conversational), so the trainer applies the model's
chat template itself. The losses are TRL's; nothing here computes one.
"""

from __future__ import annotations

from typing import Any

from ftapp.data.export import pair_record, unpaired_records
from ftapp.training.config import TrainConfig


def training_rows(method: str, rows: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    """The rows of one split of a version that `method` learns from, in TRL's format."""
    chosen = [row for row in rows if row["split"] == split]
    if method == "sft":
        return [{"messages": row["messages"]} for row in chosen]
    if method in ("dpo", "orpo"):
        # A row labelled good or bad has no counterpart to prefer it to.
        return [pair_record(row) for row in chosen if row["rejected"] is not None]
    if method == "kto":
        return [record for row in chosen for record in unpaired_records(row)]
    raise ValueError(f"unknown method {method!r}")


def trainer_classes(method: str) -> tuple[type, type]:
    """(TRL's config class, TRL's trainer class) for the method; imported only when used."""
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        return SFTConfig, SFTTrainer
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, DPOTrainer
    if method == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOConfig, ORPOTrainer
    if method == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    raise ValueError(f"unknown method {method!r}")


def method_arguments(config: TrainConfig) -> dict[str, Any]:
    """The settings of the method's TRL config that the job's config sets, beside the
    TrainingArguments every method shares (those are in trainer.py)."""
    if config.method == "sft":
        return {
            "max_length": config.max_length,
            # Packing with best-fit decreasing: no padding, and no attention across examples.
            "packing": True,
            "packing_strategy": "bfd",
            "assistant_only_loss": config.assistant_only_loss,
        }
    if config.method == "dpo":
        return {
            "max_length": config.max_length,
            "beta": config.beta,
            "loss_type": [config.loss],
            "label_smoothing": config.label_smoothing,
        }
    if config.method == "orpo":
        return {"max_length": config.max_length, "beta": config.beta}
    if config.method == "kto":
        return {
            "max_length": config.max_length,
            "beta": config.beta,
            "loss_type": config.loss,
            "desirable_weight": config.desirable_weight,
            "undesirable_weight": config.undesirable_weight,
        }
    raise ValueError(f"unknown method {config.method!r}")
