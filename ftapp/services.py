"""Services: the one object the UI and the CLI get everything from (settings, database
connections, the token counter of the default base model)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import sqlite_utils

from ftapp.models.registry import bundled_base_model
from ftapp.models.tokens import ChatTokenCounter
from ftapp.settings import Settings, load_settings
from ftapp.store.db import connect, open_db


@dataclass(frozen=True)
class Services:
    settings: Settings

    @classmethod
    def from_env(cls) -> Services:
        settings = load_settings()
        settings.ensure_dirs()
        open_db(settings.db_path).close()  # migrate once at start-up
        return cls(settings)

    @contextmanager
    def db(self) -> Iterator[sqlite_utils.Database]:
        """A connection for one unit of work, closed afterwards."""
        db = connect(self.settings.db_path)
        try:
            yield db
        finally:
            db.close()

    @cached_property
    def count_tokens(self) -> ChatTokenCounter:
        """Token counts with the default base model's chat template (loaded on first use)."""
        return ChatTokenCounter(bundled_base_model(self.settings.models_dir).path)

    @property
    def max_upload_bytes(self) -> int:
        return self.settings.max_upload_mb * 1024 * 1024
