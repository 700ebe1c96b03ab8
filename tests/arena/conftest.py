"""Arena fixtures: Services on the echo backend (each answer names its model, so a test can
tell who answered), with prompt-engineered contestants beside the base model."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftapp.arena.contestants import add_prompt_variant, set_pool
from ftapp.auth import User
from ftapp.records import Role
from ftapp.services import Services
from ftapp.settings import Settings
from ftapp.store.db import open_db

CONTESTANTS = ["base", "concise", "pirate"]


def arena_home(home: Path) -> Services:
    """Services on `home` (its models folder already linked) with the echo backend, two
    prompt variants on the base model, and all three contestants in the free-battle pool."""
    settings = Settings(home=home, backend="echo")
    settings.ensure_dirs()
    open_db(settings.db_path).close()
    services = Services(settings)
    with services.db() as db:
        add_prompt_variant(db, services.served_base, "concise", "Answer in one line.", user="t")
        add_prompt_variant(db, services.served_base, "pirate", "Talk like a pirate.", user="t")
        set_pool(db, services.served_base, CONTESTANTS, "t")
    return services


@pytest.fixture
def echo_services(home: Path) -> Services:
    return arena_home(home)


def reviewer(name: str) -> User:
    return User(name, Role.REVIEWER)
