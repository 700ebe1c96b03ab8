"""Arena fixtures: Services on the echo backend (each answer names its model, so a test can
tell who answered), with prompt-engineered contestants beside the base model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ftapp.arena.contestants import add_prompt_variant, set_pool
from ftapp.auth import User, add_user
from ftapp.records import Role
from ftapp.services import Services
from ftapp.settings import Settings
from ftapp.store.db import open_db
from tests.live_app import LiveApp, running_app

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


@contextmanager
def running_arena_app(
    home: Path,
    models_dir: Path,
    users: dict[str, tuple[str, str]] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LiveApp]:
    """The real app on the echo backend, without a worker, on a fresh `home` (the bundled model
    linked, the arena's contestants) with password users, name: (role, password)."""
    home.mkdir(parents=True)
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    arena_home(home)
    db = open_db(home / "ftapp.db")
    try:
        for name, (role, password) in (users or {}).items():
            add_user(db, name, role, password, "test")
    finally:
        db.close()
    env = {"FTAPP_BACKEND": "echo", "FTAPP_WORKER": "0", **(extra_env or {})}
    with running_app(home, models_dir, env) as live:
        yield live


@pytest.fixture
def echo_services(home: Path) -> Services:
    return arena_home(home)


def reviewer(name: str) -> User:
    return User(name, Role.REVIEWER)


def vote_in_turns(db, session_id: int, names: list[str], choose: Callable) -> None:
    """The reviewers `names` take turns asking for a battle and voting `choose(name, battle)`
    until none of them has a battle left: taking turns, they share the session's battles."""
    from ftapp.arena.battles import record_vote
    from ftapp.arena.sessions import next_battle
    from ftapp.store import arena as store

    waiting = list(names)
    while waiting:
        for who in list(waiting):
            battle_id = next_battle(db, session_id, reviewer(who))
            if battle_id is None:
                waiting.remove(who)
                continue
            record_vote(db, battle_id, who, choose(who, store.get_battle(db, battle_id)))
