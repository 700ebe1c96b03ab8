"""Pushing to the Hugging Face Hub. The real Hub can't be reached here, so uploads go to a
recording stand-in for HfApi that keeps every call's arguments and what the folder held at
upload time; a real HfApi pointed at a closed loopback port checks the failure path. Also
`ftapp export list|push` through the export commands' own parser."""

from __future__ import annotations

import argparse
import json
import socket
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ftapp.cli.export import add_export_commands
from ftapp.deploy.hub import push_to_hub
from ftapp.errors import ServingError, ValidationError
from ftapp.models.registry import bundled_base_model
from ftapp.store import jobs as job_store
from ftapp.store.db import open_db
from ftapp.store.exports import exports_of, record_export
from tests.serving_fixtures import home_with_adapter

ENDPOINT = "https://hub.test"
COMMIT = "c0ffee" * 6 + "c0fe"


class RecordingHfApi:
    """Stands in for huggingface_hub.HfApi: records create_repo and upload_folder calls, and at
    upload time the folder's file names, README text and adapter config (the folder is
    temporary and gone afterwards)."""

    endpoint = ENDPOINT

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict[str, Any]]] = []
        self.files: dict[str, bytes] = {}

    def create_repo(self, *args: Any, **kwargs: Any) -> str:
        from huggingface_hub import RepoUrl

        self.calls.append(("create_repo", args, kwargs))
        return RepoUrl(f"{ENDPOINT}/{args[0]}", endpoint=ENDPOINT)

    def upload_folder(self, *args: Any, **kwargs: Any) -> SimpleNamespace:
        self.calls.append(("upload_folder", args, kwargs))
        folder = Path(kwargs["folder_path"])
        assert all(p.is_file() for p in folder.iterdir())  # a flat folder of files
        self.files = {p.name: p.read_bytes() for p in folder.iterdir()}
        return SimpleNamespace(oid=COMMIT)  # what matters of HfApi's CommitInfo

    @property
    def readme(self) -> str:
        return self.files["README.md"].decode()


@pytest.fixture
def adapter_home(tmp_path, models_dir, secret_adapter):
    """A fresh home listing the trained adapter as "secret" and its step-12 checkpoint."""
    settings = home_with_adapter(tmp_path / "home", models_dir, secret_adapter)
    with closing(open_db(settings.db_path)) as db:
        job_store.add_variant(db, {"name": "secret/step-12", "kind": "checkpoint", "step": 12,
                                   "path": str(secret_adapter.path.parent / "checkpoint-12"),
                                   "base_model": bundled_base_model(models_dir).name})  # fmt: skip
    return settings


def _calls_without_folder(api: RecordingHfApi) -> list[tuple[str, tuple, dict[str, Any]]]:
    return [
        (
            name,
            args,
            {k: v for k, v in kwargs.items() if k not in ("folder_path", "commit_message")},
        )
        for name, args, kwargs in api.calls
    ]


@pytest.mark.slow
def test_an_adapter_push_uploads_the_adapter_files_and_the_card(adapter_home, secret_adapter):
    from huggingface_hub import ModelCard

    api = RecordingHfApi()
    with closing(open_db(adapter_home.db_path)) as db:
        pushed = push_to_hub(db, adapter_home, "secret", "alice/secret-lora", "tester",
                             token="t", api=api)  # fmt: skip
        rows = exports_of(db, "secret")
    url = pushed.url
    assert (url, pushed.commit) == (f"{ENDPOINT}/alice/secret-lora", COMMIT)
    assert _calls_without_folder(api) == [
        ("create_repo", ("alice/secret-lora",),
         {"repo_type": "model", "private": True, "exist_ok": True}),
        ("upload_folder", (), {"repo_id": "alice/secret-lora", "repo_type": "model"}),
    ]  # fmt: skip
    assert "secret" in api.calls[1][2]["commit_message"]
    names = set(api.files)
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json",
            "README.md"} <= names  # fmt: skip
    assert not names & {"training_args.bin", "ftapp-adapter.json", "optimizer.pt"}
    for name in names - {"README.md", "adapter_config.json"}:  # copied as they are
        assert api.files[name] == (secret_adapter.path / name).read_bytes(), name
    config = json.loads(api.files["adapter_config.json"])
    source = json.loads((secret_adapter.path / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "SmolLM2-135M-Instruct"  # not a local path
    assert {k: v for k, v in config.items() if k != "base_model_name_or_path"} == {
        k: v for k, v in source.items() if k != "base_model_name_or_path"
    }
    card = ModelCard(api.readme)
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "text-generation"
    assert 'PeftModel.from_pretrained(base, "alice/secret-lora")' in api.readme
    assert [(r["kind"], r["target"], r["url"], r["created_by"]) for r in rows] == [
        ("hub_adapter", "alice/secret-lora", url, "tester")
    ]


@pytest.mark.slow
def test_a_public_checkpoint_push_leaves_the_training_state_behind(adapter_home, secret_adapter):
    checkpoint = secret_adapter.path.parent / "checkpoint-12"
    assert (checkpoint / "optimizer.pt").exists()  # the state that must not be uploaded
    api = RecordingHfApi()
    with closing(open_db(adapter_home.db_path)) as db:
        push_to_hub(db, adapter_home, "secret/step-12", "alice/step-12", "tester", token="t",
                    private=False, api=api)  # fmt: skip
        assert [r["kind"] for r in exports_of(db, "secret/step-12")] == ["hub_adapter"]
    assert api.calls[0][2]["private"] is False
    assert (
        api.files["adapter_model.safetensors"]
        == (checkpoint / "adapter_model.safetensors").read_bytes()
    )
    assert not set(api.files) & {"optimizer.pt", "scheduler.pt", "rng_state.pth",
                                 "trainer_state.json", "training_args.bin"}  # fmt: skip


@pytest.mark.slow
def test_a_merged_push_uploads_the_merged_model(adapter_home):
    from huggingface_hub import ModelCard

    api = RecordingHfApi()
    with closing(open_db(adapter_home.db_path)) as db:
        url = push_to_hub(db, adapter_home, "secret", "alice/secret-merged", "tester",
                          merged=True, token="t", api=api).url  # fmt: skip
        rows = exports_of(db, "secret")
    assert [call[0] for call in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[1][2]["repo_id"] == "alice/secret-merged"
    names = set(api.files)
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "README.md"} <= names  # fmt: skip
    assert "adapter_config.json" not in names and "adapter_model.safetensors" not in names
    assert ModelCard(api.readme).data.library_name == "transformers"
    assert 'AutoModelForCausalLM.from_pretrained("alice/secret-merged")' in api.readme
    # Only the push is recorded, not the temporary merged folder it was built in.
    assert [(r["kind"], r["target"], r["url"]) for r in rows] == [
        ("hub_merged", "alice/secret-merged", url)
    ]
    assert list(adapter_home.exports_dir.iterdir()) == []


def _closed_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_an_unreachable_hub_is_a_serving_error_and_records_nothing(adapter_home):
    from huggingface_hub import HfApi

    endpoint = f"http://127.0.0.1:{_closed_port()}"
    with closing(open_db(adapter_home.db_path)) as db:
        with pytest.raises(
            ServingError, match=f"could not reach the Hugging Face Hub at {endpoint}"
        ):
            push_to_hub(db, adapter_home, "secret", "alice/secret-lora", "tester", token="x",
                        api=HfApi(endpoint=endpoint, token="x"))  # fmt: skip
        assert db["exports"].count == 0


def test_no_token_anywhere_is_a_validation_error(monkeypatch, tmp_path, settings, db):
    import huggingface_hub.constants
    from huggingface_hub import get_token

    hf_home = tmp_path / "hf"
    hf_home.mkdir()
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    # huggingface_hub reads HF_HOME once, at import: point its token file there too.
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    assert get_token() is None
    api = RecordingHfApi()
    with pytest.raises(ValidationError, match="set HF_TOKEN .* or run `hf auth login`"):
        push_to_hub(db, settings, "secret", "alice/secret-lora", "tester", api=api)
    assert api.calls == [] and db["exports"].count == 0


@pytest.mark.parametrize(
    "repo_id", ["secret-lora", "alice/team/secret", "alice/", "/secret", "alice/bad name",
                "alice/bad--name", "alice/..", ""],
)  # fmt: skip
def test_a_bad_repo_id_is_a_validation_error(repo_id, settings, db):
    api = RecordingHfApi()
    with pytest.raises(ValidationError, match="owner/name"):
        push_to_hub(db, settings, "secret", repo_id, "tester", token="t", api=api)
    assert api.calls == [] and db["exports"].count == 0


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ftapp")
    add_export_commands(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_lists_exports_newest_first_and_refuses_a_bad_push(monkeypatch, capsys, settings, db):
    monkeypatch.setenv("FTAPP_HOME", str(settings.home))
    record_export(db, "secret", "merged", "/exports/secret-merged", None, "ann")
    record_export(db, "secret", "hub_adapter", "ann/secret", "https://hub.test/ann/secret", "ann")
    record_export(db, "other", "merged", "/exports/other-merged", None, "ann")
    assert _run_cli(["export", "list", "secret", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["kind"], r["target"]) for r in listed] == [
        ("hub_adapter", "ann/secret"), ("merged", "/exports/secret-merged")
    ]  # fmt: skip
    assert _run_cli(["export", "list", "secret"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "https://hub.test/ann/secret" in lines[0] and "/exports/secret-merged" in lines[1]
    assert _run_cli(["export", "list", "nothing"]) == 0
    assert capsys.readouterr().out.strip() == "nothing has not been exported"
    with pytest.raises(ValidationError, match="owner/name"):
        _run_cli(["export", "push", "secret", "not-a-repo", "--public"])
    assert db["exports"].count == 3 and db["export_jobs"].count == 0
