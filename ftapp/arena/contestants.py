"""Who can take part in a battle: the base model, every adapter and checkpoint trained on the
served base model, and prompt-engineered variants (a served model with a system prompt).
Also the pool of contestants an admin enabled for free battles.

Contestant names share one namespace with jobs and model variants, so a name always means
one thing.
"""

from __future__ import annotations

import sqlite_utils

from ftapp.errors import Conflict, ValidationError
from ftapp.models.registry import BaseModel
from ftapp.names import BASE, check_model_name
from ftapp.records import Contestant
from ftapp.serving.setup import servable_models
from ftapp.store import arena as store
from ftapp.training.jobs import name_taken

MAX_SYSTEM_PROMPT_CHARS = 20_000


def all_contestants(db: sqlite_utils.Database, base: BaseModel) -> list[Contestant]:
    """Everything that can answer on this server: models first, then prompt variants."""
    models = servable_models(db, base)
    prompted = [c for c in store.list_prompt_variants(db) if c.model in models]
    return [Contestant(name, name) for name in models] + prompted


def resolve_contestants(
    db: sqlite_utils.Database, base: BaseModel, names: list[str]
) -> list[Contestant]:
    """The contestants with these names, in order; a clear error for an unknown or repeated
    name."""
    known = {c.name: c for c in all_contestants(db, base)}
    chosen: list[Contestant] = []
    for name in names:
        name = (name or "").strip()
        if name not in known:
            raise ValidationError(
                f"unknown contestant {name!r}; choose from {', '.join(known) or 'none'}"
            )
        if known[name] in chosen:
            raise ValidationError(f"contestant {name!r} is listed twice")
        chosen.append(known[name])
    return chosen


def add_prompt_variant(
    db: sqlite_utils.Database,
    base: BaseModel,
    name: str,
    system_prompt: str,
    *,
    model: str = BASE,
    user: str,
) -> Contestant:
    """A prompt-engineered contestant: `model` (the base model by default) answering with
    `system_prompt`."""
    name = check_model_name(name)
    if not (system_prompt or "").strip():
        raise ValidationError("a prompt variant needs a system prompt")
    if len(system_prompt) > MAX_SYSTEM_PROMPT_CHARS:
        raise ValidationError(
            f"the system prompt is {len(system_prompt):,} characters; the limit is "
            f"{MAX_SYSTEM_PROMPT_CHARS:,}"
        )
    models = servable_models(db, base)
    if model not in models:
        raise ValidationError(f"unknown model {model!r}; choose from {', '.join(models)}")
    if name_taken(db, name):
        raise Conflict(f"name {name!r} is already used by a model, a training job or a contestant")
    store.insert_prompt_variant(db, name, model, system_prompt, user)
    return Contestant(name, model, system_prompt)


def set_pool(db: sqlite_utils.Database, base: BaseModel, names: list[str], user: str) -> None:
    """The contestants free battles draw from (two or more)."""
    chosen = resolve_contestants(db, base, names)
    if len(chosen) < 2:
        raise ValidationError("enable at least two contestants for free battles")
    store.replace_pool(db, [c.name for c in chosen], user)


def pool_contestants(db: sqlite_utils.Database, base: BaseModel) -> list[Contestant]:
    """The enabled contestants that can still answer (a deleted adapter drops out)."""
    known = {c.name: c for c in all_contestants(db, base)}
    return [known[name] for name in store.pool(db) if name in known]
