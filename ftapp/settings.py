"""Settings: one frozen object read from the environment. FTAPP_HOME relocates all state.

| variable              | default           | meaning                                          |
|-----------------------|-------------------|--------------------------------------------------|
| FTAPP_HOME            | ./ftapp-data      | database, uploads, models, adapters, logs        |
| FTAPP_HOST            | 127.0.0.1         | interface the web app binds to                   |
| FTAPP_PORT            | 7860              | port of the web app                              |
| FTAPP_MAX_UPLOAD_MB   | 200               | largest file accepted for import                 |
| FTAPP_MAX_TOKENS      | 2048              | default longest example (tokens) at import       |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ftapp.errors import ValidationError


@dataclass(frozen=True)
class Settings:
    home: Path
    host: str = "127.0.0.1"
    port: int = 7860
    max_upload_mb: int = 200
    max_tokens: int = 2048

    @property
    def db_path(self) -> Path:
        return self.home / "ftapp.db"

    @property
    def uploads_dir(self) -> Path:
        return self.home / "uploads"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def exports_dir(self) -> Path:
        return self.home / "exports"

    def ensure_dirs(self) -> None:
        for path in (
            self.home,
            self.uploads_dir,
            self.models_dir,
            self.adapters_dir,
            self.logs_dir,
            self.exports_dir,
        ):
            path.mkdir(parents=True, exist_ok=True)


def _int_env(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be a whole number, got {raw!r}") from None


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read settings from the environment (or the given mapping, for tests)."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("FTAPP_HOME") or "ftapp-data").expanduser().resolve()
    return Settings(
        home=home,
        host=env.get("FTAPP_HOST") or "127.0.0.1",
        port=_int_env(env, "FTAPP_PORT", 7860),
        max_upload_mb=_int_env(env, "FTAPP_MAX_UPLOAD_MB", 200),
        max_tokens=_int_env(env, "FTAPP_MAX_TOKENS", 2048),
    )
