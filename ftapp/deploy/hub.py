"""Pushing a model variant to the Hugging Face Hub: the adapter with its model card, or the
model merged into its base (see merge.py), through huggingface_hub's HfApi.

The folder to upload is assembled in a temporary folder first, so nothing reaches the Hub
when the adapter can't be read or merged; and a push is recorded in `exports` only once the
upload went through. Network and Hub failures become a ServingError naming the endpoint.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from ftapp.deploy.merge import merge_adapter, variant_and_base
from ftapp.deploy.model_card import card_facts, render_model_card
from ftapp.errors import ServingError, ValidationError
from ftapp.settings import Settings
from ftapp.store.exports import record_export

# Files of an adapter or checkpoint folder that are training state, not the adapter: the
# optimizer and scheduler (large), pickled trainer arguments, and ftapp's own metadata (it
# holds local paths; the model card says what it says). README.md is replaced by our card.
_NOT_UPLOADED = {"README.md", "optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json",
                 "training_args.bin", "ftapp-adapter.json"}  # fmt: skip


@dataclass(frozen=True)
class Pushed:
    url: str  # the repo's page
    commit: str | None  # the commit the upload made (None if the Hub did not say)


def push_to_hub(
    db: sqlite_utils.Database,
    settings: Settings,
    model_name: str,
    repo_id: str,
    user: str,
    *,
    merged: bool = False,
    private: bool = True,
    token: str | None = None,
    api: Any = None,
) -> Pushed:
    """Upload variant `model_name` to the Hub model repo `repo_id` ("owner/name"), created if
    needed (private unless `private=False`). `merged`: the merged model instead of the
    adapter. `token`: else HF_TOKEN or the saved `hf auth login`. `api`: an HfApi (tests pass
    a stand-in). Returns the repo's URL and the upload's commit."""
    from huggingface_hub import HfApi, constants, get_token

    check_repo_id(repo_id)
    token = token or get_token()
    if not token:
        raise ValidationError(
            "no Hugging Face token: set HF_TOKEN to a token with write access "
            "(https://huggingface.co/settings/tokens) or run `hf auth login`"
        )
    variant, base = variant_and_base(db, settings, model_name)
    api = api if api is not None else HfApi(token=token)
    endpoint = getattr(api, "endpoint", None) or constants.ENDPOINT
    with tempfile.TemporaryDirectory(prefix="ftapp-push-") as tmp:
        folder = Path(tmp) / "upload"
        if merged:
            merge_adapter(db, settings, variant.name, user, folder, record=False)
        else:
            _copy_adapter(Path(variant.path), folder, base.hub_id or base.name)
        # The card's loading snippet names the repo it will live in.
        facts = {**card_facts(db, settings, variant.name), "repo_id": repo_id}
        card = render_model_card(facts, merged=merged)
        (folder / "README.md").write_text(card, encoding="utf-8")
        what = "merged model" if merged else "LoRA adapter"
        try:
            repo = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo_id, folder_path=str(folder), repo_type="model",
                commit_message=f"Upload {what} {variant.name} from ftapp",
            )  # fmt: skip
        except _hub_errors() as exc:
            raise ServingError(_hub_message(endpoint, repo_id, exc)) from exc
    url = str(repo) if isinstance(repo, str) else f"{endpoint.rstrip('/')}/{repo_id}"
    kind = "hub_merged" if merged else "hub_adapter"
    record_export(db, variant.name, kind, repo_id, url, user)
    return Pushed(url, getattr(commit, "oid", None))


def check_repo_id(repo_id: str) -> None:
    """A ValidationError unless `repo_id` is a valid Hub repo id of the form "owner/name"."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    example = "write it as owner/name, e.g. my-org/my-model"
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValidationError(f"repo id {repo_id!r} must be owner/name: {example}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ValidationError(f"repo id {repo_id!r} is not valid ({exc}): {example}") from None


def _copy_adapter(source: Path, folder: Path, base_ref: str) -> None:
    """The adapter's files (not its training state) into `folder`, its config pointing at the
    base model by hub id (or name) instead of a path on this machine."""
    folder.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        is_state = path.name in _NOT_UPLOADED or path.name.startswith("rng_state")
        if path.is_file() and not is_state:
            shutil.copy2(path, folder / path.name)
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_ref
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What a failed Hub call raises: huggingface_hub's HTTP errors, and the HTTP client's
    connection errors and timeouts (httpx for huggingface_hub 1.x, httpx2 for 2.x; requests
    for older ones)."""
    from huggingface_hub.errors import HfHubHTTPError

    errors: list[type[BaseException]] = [HfHubHTTPError, ConnectionError, TimeoutError]
    for module, name in (("httpx", "HTTPError"), ("httpx2", "HTTPError"),
                         ("requests", "RequestException")):  # fmt: skip
        with contextlib.suppress(ImportError, AttributeError):  # that client isn't installed
            errors.append(getattr(importlib.import_module(module), name))
    return tuple(errors)


def _hub_message(endpoint: str, repo_id: str, exc: BaseException) -> str:
    from huggingface_hub.errors import HfHubHTTPError

    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, HfHubHTTPError):  # the Hub answered, and said no
        return (
            f"the Hugging Face Hub at {endpoint} refused the push to {repo_id}: {reason} "
            "(check that the token has write access to that owner)"
        )
    return (
        f"could not reach the Hugging Face Hub at {endpoint}: {reason}. Nothing was uploaded; "
        "check the network (or HF_ENDPOINT) and try again"
    )
