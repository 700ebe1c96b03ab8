"""The names every layer agrees on: the two reserved model names ("base" and "production"),
the one pattern a model-like name must match (jobs, model variants and prompt variants share
one namespace), and the largest LoRA rank the serving engine is started for (training refuses
more, so whatever is trained can be served). It sits at the bottom so that training, serving,
the Arena and production can all use it without importing one another."""

from __future__ import annotations

import re

from ftapp.errors import ValidationError

BASE = "base"  # the model name of the base model itself, in every backend
PRODUCTION = "production"  # the name whatever is promoted answers under
# Names that always mean one model: no job, variant or contestant may take them.
RESERVED_NAMES = (BASE, PRODUCTION)

# Jobs, model variants and prompt-engineered contestants: one namespace, one pattern.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
MODEL_NAME_RULE = "use 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit"

MAX_LORA_RANK = 64  # vLLM reserves memory per rank: the serving limit is the training limit


def check_model_name(name: str, field: str = "name") -> str:
    """`name` stripped, if it matches the pattern; a ValidationError naming `field` if not.
    Whether the name is free is a question for the store (see training/jobs.name_taken)."""
    name = (name or "").strip()
    if not MODEL_NAME.match(name):
        raise ValidationError(f"{field} {name!r}: {MODEL_NAME_RULE}")
    return name
