"""Settings: one frozen object read from the environment. FTAPP_HOME relocates all state.

| variable              | default           | meaning                                          |
|-----------------------|-------------------|--------------------------------------------------|
| FTAPP_HOME            | ./ftapp-data      | database, uploads, models, adapters, logs        |
| FTAPP_HOST            | 127.0.0.1         | interface the web app binds to                   |
| FTAPP_PORT            | 7860              | port of the web app                              |
| FTAPP_MAX_UPLOAD_MB   | 200               | largest file accepted for import                 |
| FTAPP_MAX_TOKENS      | 2048              | default longest example (tokens) at import       |
| FTAPP_BACKEND         | auto              | generation: auto (vLLM if installed, else hf),   |
|                       |                   | vllm, hf (in-process transformers), echo (tests) |
| FTAPP_BASE_MODEL      | (bundled model)   | the base model served, by registry name          |
| FTAPP_VLLM_URL        | (none)            | use this vLLM deployment instead of starting one |
| FTAPP_VLLM_PORT       | 0 (a free port)   | loopback port of the vLLM server ftapp starts    |
| FTAPP_VLLM_GPU_MEMORY | 0.5               | vLLM's share of GPU memory; the rest trains      |
| FTAPP_VLLM_KV_CACHE_GB| 1                 | vLLM's KV cache on CPU machines (GiB)            |
| FTAPP_SERVE_THREADS   | 0 (all cores)     | CPU threads for generation (vLLM or hf)          |
| FTAPP_VLLM_ARGS       | (none)            | more flags for the vLLM server, shell-quoted     |
| FTAPP_ARENA_MAX_NEW_TOKENS | 512          | the longest answer in a free Arena battle        |
"""

from __future__ import annotations

import os
import shlex
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
    backend: str = "auto"
    base_model: str = ""  # "": the bundled model
    vllm_url: str = ""
    vllm_port: int = 0
    vllm_gpu_memory: float = 0.5
    vllm_kv_cache_gb: int = 1
    serve_threads: int = 0
    vllm_args: tuple[str, ...] = ()
    arena_max_new_tokens: int = 512  # the longest answer in a free battle

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


def _float_env(env: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError(f"{name} must be a number, got {raw!r}") from None
    if not low < value <= high:
        raise ValidationError(f"{name} must be above {low} and at most {high}, got {raw!r}")
    return value


BACKEND_CHOICES = ("auto", "vllm", "hf", "echo")


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
        backend=_choice_env(env, "FTAPP_BACKEND", BACKEND_CHOICES),
        base_model=env.get("FTAPP_BASE_MODEL") or "",
        vllm_url=env.get("FTAPP_VLLM_URL") or "",
        vllm_port=_int_env(env, "FTAPP_VLLM_PORT", 0),
        vllm_gpu_memory=_float_env(env, "FTAPP_VLLM_GPU_MEMORY", 0.5, 0.0, 1.0),
        vllm_kv_cache_gb=_int_env(env, "FTAPP_VLLM_KV_CACHE_GB", 1),
        serve_threads=_int_env(env, "FTAPP_SERVE_THREADS", 0),
        vllm_args=_args_env(env, "FTAPP_VLLM_ARGS"),
        arena_max_new_tokens=_bounded(
            _int_env(env, "FTAPP_ARENA_MAX_NEW_TOKENS", 512), "FTAPP_ARENA_MAX_NEW_TOKENS", 1, 2048
        ),  # fmt: skip
    )


def _bounded(value: int, name: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ValidationError(f"{name} must be from {low} to {high}, got {value}")
    return value


def _args_env(env: dict[str, str], name: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(env.get(name) or ""))
    except ValueError as exc:
        raise ValidationError(f"{name} is not valid shell quoting: {exc}") from None


def _choice_env(env: dict[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or choices[0]).strip().lower()
    if raw not in choices:
        raise ValidationError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw
