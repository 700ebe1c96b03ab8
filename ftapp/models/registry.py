"""The base models a job can start from: the bundled model, local folders, hub ids.

Registered models live in the `base_models` table. A local folder must hold a transformers
model (config.json and a tokenizer). A hub id is fetched with huggingface_hub into
FTAPP_HOME/models; where the hub can't be reached, that fails with a message saying so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from ftapp.errors import Conflict, NotFound, ValidationError
from ftapp.models.bundled import BUNDLED_MODEL, bundled_model_dir, is_prepared
from ftapp.store.db import write_transaction
from ftapp.timeutil import utc_now

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class BaseModel:
    name: str
    source: str  # "bundled", "local" or "hub"
    path: Path
    hub_id: str | None = None


def bundled_base_model(models_dir: Path) -> BaseModel:
    if not is_prepared(models_dir):
        raise NotFound(
            f"the bundled model {BUNDLED_MODEL} is not prepared yet: run `ftapp models prepare`"
        )
    return BaseModel(BUNDLED_MODEL, "bundled", bundled_model_dir(models_dir))


def list_base_models(db: sqlite_utils.Database, models_dir: Path) -> list[BaseModel]:
    models = [bundled_base_model(models_dir)] if is_prepared(models_dir) else []
    for row in db["base_models"].rows_where(order_by="name"):
        models.append(BaseModel(row["name"], row["source"], Path(row["path"]), row["hub_id"]))
    return models


def get_base_model(db: sqlite_utils.Database, models_dir: Path, name: str) -> BaseModel:
    if name in ("bundled", BUNDLED_MODEL):
        return bundled_base_model(models_dir)
    for model in list_base_models(db, models_dir):
        if model.name == name:
            return model
    raise NotFound(f"no base model named {name!r}; register it with `ftapp models add`")


def add_base_model(
    db: sqlite_utils.Database, models_dir: Path, source: str, *, name: str | None = None
) -> BaseModel:
    """Register a local model folder or a hub id (downloaded now). Returns the new entry."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        check_model_folder(folder)
        model = BaseModel(name or folder.name, "local", folder.resolve())
    elif HUB_ID.match(source):
        model = BaseModel(name or source.replace("/", "--"), "hub", _download(source, models_dir),
                          hub_id=source)  # fmt: skip
    else:
        raise ValidationError(
            f"{source!r} is neither a model folder on this machine nor a hub id like 'org/name'"
        )
    if not NAME.match(model.name) or model.name in ("bundled", BUNDLED_MODEL):
        raise ValidationError(f"model name {model.name!r}: use letters, digits, '.', '_', '-'")
    with write_transaction(db):
        if db["base_models"].count_where("name = ?", [model.name]):
            raise Conflict(f"a base model named {model.name!r} is already registered")
        db["base_models"].insert(
            {
                "name": model.name,
                "source": model.source,
                "path": str(model.path),
                "hub_id": model.hub_id,
                "added_at": utc_now(),
            }  # fmt: skip
        )
    return model


def check_model_folder(folder: Path) -> None:
    if not (folder / "config.json").exists():
        raise ValidationError(f"{folder}: not a transformers model folder (no config.json)")
    if not any((folder / name).exists() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise ValidationError(f"{folder}: the model folder has no tokenizer files")


def _download(hub_id: str, models_dir: Path) -> Path:
    from huggingface_hub import snapshot_download

    target = models_dir / hub_id.replace("/", "--")
    try:
        snapshot_download(hub_id, local_dir=target)
    except Exception as exc:  # offline, unknown repo, gated: all end the same way for the user
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValidationError(
            f"can't download {hub_id!r} from the Hugging Face Hub ({reason}). If this machine "
            "is offline, download the model elsewhere and register its folder instead."
        ) from None
    return target
