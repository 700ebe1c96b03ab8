"""Shared fixtures: a real SQLite file per test, the real bundled model prepared once per
session (reused from ftapp-data/models when `make` already prepared it), its tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ftapp.settings import Settings
from ftapp.store.db import open_db

REPO = Path(__file__).resolve().parent.parent
# The trained adapter and the vLLM server are shared by tests/serving and tests/ui.
pytest_plugins = ["tests.serving_fixtures"]


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """Where the bundled model is prepared; shared with `make run` so it's prepared once."""
    from ftapp.models.bundled import prepare_bundled_model

    path = Path(os.environ.get("FTAPP_TEST_MODELS") or REPO / "ftapp-data" / "models")
    prepare_bundled_model(path)
    return path


@pytest.fixture(scope="session")
def bundled_model_dir(models_dir: Path) -> Path:
    from ftapp.models.bundled import bundled_model_dir

    return bundled_model_dir(models_dir)


@pytest.fixture(scope="session")
def count_tokens(bundled_model_dir: Path):
    from ftapp.models.tokens import ChatTokenCounter

    return ChatTokenCounter(bundled_model_dir)


@pytest.fixture
def home(tmp_path: Path, models_dir: Path) -> Path:
    """A fresh FTAPP_HOME whose models folder points at the prepared bundled model."""
    path = tmp_path / "home"
    path.mkdir()
    (path / "models").symlink_to(models_dir, target_is_directory=True)
    return path


@pytest.fixture
def settings(home: Path) -> Settings:
    settings = Settings(home=home)
    settings.ensure_dirs()
    return settings


@pytest.fixture
def services(settings: Settings):
    from ftapp.services import Services

    open_db(settings.db_path).close()
    return Services(settings)


@pytest.fixture
def db(settings: Settings):
    database = open_db(settings.db_path)
    yield database
    database.close()


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    """Environment for a subprocess (CLI, app) that uses this test's FTAPP_HOME."""
    return {**os.environ, "FTAPP_HOME": str(home), "HF_HUB_OFFLINE": "1"}
