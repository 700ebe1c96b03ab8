"""Shared fixtures: a real SQLite file per test (`db`, which needs no model), the real bundled
model prepared once per session (reused from ftapp-data/models when `make` already prepared
it) for the tests that ask for it (`home`, `settings`, `services`, `count_tokens`...), its
tokenizer. Tests marked `gpu` skip where there is no CUDA."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ftapp.settings import Settings
from ftapp.store.db import open_db

REPO = Path(__file__).resolve().parent.parent
# The trained adapter and the vLLM server are shared by tests/serving and tests/ui.
pytest_plugins = ["tests.serving_fixtures"]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked `gpu` is skipped where torch sees no CUDA, before any of its fixtures is
    set up (they may prepare models it would never use)."""
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("no CUDA: torch.cuda.is_available() is False")


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
def bare_home(tmp_path: Path) -> Path:
    """A fresh, empty FTAPP_HOME: no models folder, so nothing needs the bundled model."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def home(bare_home: Path, models_dir: Path) -> Path:
    """The test's FTAPP_HOME (`bare_home`), its models folder pointing at the prepared bundled
    model: for tests that load, count tokens with or register the model."""
    (bare_home / "models").symlink_to(models_dir, target_is_directory=True)
    return bare_home


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
def db(bare_home: Path):
    """The test's database, migrated: `settings.db_path` when a test asks for both. Needs no
    model; a test that needs one asks for `home`, `settings` or `count_tokens` too."""
    database = open_db(Settings(home=bare_home).db_path)
    yield database
    database.close()


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    """Environment for a subprocess (CLI, app) that uses this test's FTAPP_HOME."""
    return {**os.environ, "FTAPP_HOME": str(home), "HF_HUB_OFFLINE": "1"}
