"""The model registry: the bundled model, local folders, hub ids (offline here)."""

import json

import pytest

from ftapp.errors import Conflict, NotFound, ValidationError
from ftapp.models.bundled import BUNDLED_MODEL
from ftapp.models.registry import add_base_model, get_base_model, list_base_models


def test_bundled_model_is_listed(db, settings, bundled_model_dir):
    models = list_base_models(db, settings.models_dir)
    assert models[0].name == BUNDLED_MODEL and models[0].source == "bundled"
    assert get_base_model(db, settings.models_dir, "bundled").path == models[0].path
    assert (models[0].path / "config.json").exists()


def test_bundled_model_not_prepared_says_how(db, tmp_path):
    with pytest.raises(NotFound, match="ftapp models prepare"):
        get_base_model(db, tmp_path / "empty", "bundled")


def test_local_folder_is_registered_and_checked(db, settings, tmp_path, bundled_model_dir):
    model = add_base_model(db, settings.models_dir, str(bundled_model_dir), name="my-smol")
    assert model.source == "local"
    assert get_base_model(db, settings.models_dir, "my-smol").path == bundled_model_dir
    with pytest.raises(Conflict, match="already registered"):
        add_base_model(db, settings.models_dir, str(bundled_model_dir), name="my-smol")

    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(ValidationError, match="no config.json"):
        add_base_model(db, settings.models_dir, str(empty))
    (empty / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValidationError, match="no tokenizer"):
        add_base_model(db, settings.models_dir, str(empty))
    assert [m.name for m in list_base_models(db, settings.models_dir)] == [BUNDLED_MODEL, "my-smol"]


def test_unreachable_hub_gives_a_message_not_a_traceback(db, settings, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValidationError, match="can't download 'someorg/some-model'.*offline"):
        add_base_model(db, settings.models_dir, "someorg/some-model")
    assert db["base_models"].count == 0


def test_nonsense_source_is_refused(db, settings):
    with pytest.raises(ValidationError, match="neither a model folder"):
        add_base_model(db, settings.models_dir, "../../etc/passwd")
    with pytest.raises(NotFound, match="no base model named"):
        get_base_model(db, settings.models_dir, "missing")
