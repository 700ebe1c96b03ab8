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
| FTAPP_AUTH            | auto              | sign-in: auto (hf on a Space, else password),    |
|                       |                   | password (`ftapp users`), hf (Hugging Face OAuth)|
| FTAPP_ADMINS          | (none)            | hf sign-in: admins' Hugging Face usernames,      |
|                       |                   | comma-separated; `*` makes everyone signed in one|
| FTAPP_DEMO            | 0                 | 1: public demo (training limits, seeded dataset) |
| FTAPP_DEMO_MAX_EXAMPLES | 200             | demo: most training examples a job may use       |
| FTAPP_DEMO_MAX_STEPS  | 60                | demo: most optimizer steps a job may take        |
| FTAPP_DEMO_MAX_MINUTES| 10                | demo: a job stops (and keeps its adapter) after  |
| FTAPP_EPHEMERAL       | 0                 | 1: the home is lost on restart (a Space without  |
|                       |                   | persistent storage); the page warns              |
| FTAPP_BACKUP_MINUTES  | 0 (off)           | copy the database to FTAPP_HOME/backups this often|
| FTAPP_ALLOWED_HOSTS   | (none)            | more host names the app answers to (behind a     |
|                       |                   | proxy), comma-separated; see ftapp/http_policy.py|
| FTAPP_CODE_CHECKS     | 0                 | 1: evaluation may run admins' Python files and   |
|                       |                   | commands (never in demo mode or on a Space)      |
| FTAPP_JUDGE_API_HOSTS | (none)            | hosts FTAPP_JUDGE_API_KEY may be sent to         |
| FTAPP_SESSION_IDLE_MINUTES | 720          | a sign-in ends after this long unused            |
| FTAPP_SESSION_MAX_HOURS | 168             | and this long after signing in, used or not      |
| FTAPP_UPLOAD_MB_PER_HOUR | 1000           | most a user may upload in an hour                |
| FTAPP_DRIFT_PROBES    | 240 (all)         | general probes each variant's drift is measured  |
|                       |                   | on, in the background; 0 turns drift off         |
| FTAPP_MAX_DRIFT       | 0.5               | promoting a variant that drifted more (nats per  |
|                       |                   | token) needs a recorded reason                   |
| FTAPP_API_LOG_TEXTS   | 0 (1 in the demo) | 1: keep the prompts and answers of API calls     |
|                       |                   | (always: their counts, tokens and latencies)     |
| FTAPP_LOG_RETENTION_DAYS | 30             | production prompts and answers are erased after  |
|                       |                   | this many days (0: kept); the numbers stay       |
| FTAPP_CANARY_MIN_REQUESTS | 20            | requests on each side before a canary release    |
|                       |                   | may roll itself back                             |
| FTAPP_RAY_ADDRESS     | (none)            | a Ray cluster's job server (its dashboard, like  |
|                       |                   | http://head:8265): jobs may train there          |
| FTAPP_RAY_STORAGE     | FTAPP_HOME/ray-   | the Ray jobs' storage: a path every node mounts  |
|                       | storage           | or an object store URI (s3://, gs://)            |
| FTAPP_CANARY_ALPHA    | 0.01              | it does, when its errors or thumbs down are worse|
|                       |                   | at this significance (one-sided Fisher exact)    |
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from ftapp.errors import ValidationError

# The promotion gate's drift limit, nats per token (see ftapp/deploy/gate.py).
DEFAULT_MAX_DRIFT = 0.5


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
    auth: str = "password"  # password (users in SQLite; none: single-user on loopback) or hf
    admins: tuple[str, ...] = ()  # hf sign-in: admins' Hugging Face usernames ("*": everyone)
    demo: bool = False
    demo_max_examples: int = 200
    demo_max_steps: int = 60
    demo_max_minutes: int = 10
    ephemeral: bool = False  # the home doesn't survive a restart: the page says so
    backup_minutes: int = 0  # 0: no periodic database backup
    allowed_hosts: tuple[str, ...] = ()  # host names beyond the bound address and loopback
    space_host: str = ""  # a Space's own host name (SPACE_HOST), allowed like the above
    code_checks: bool = False  # evaluation may run Python-file and command checks
    judge_api_hosts: tuple[str, ...] = ()  # where FTAPP_JUDGE_API_KEY may be sent
    session_idle_minutes: int = 720
    session_max_hours: int = 168
    upload_mb_per_hour: int = 1000
    drift_probes: int = 240  # 0: no drift measured
    max_drift: float = DEFAULT_MAX_DRIFT  # nats per token: the promotion gate's threshold
    api_log_texts: bool = False  # keep API calls' prompts and answers (privacy: off)
    log_retention_days: int = 30  # production texts erased after this many days; 0: kept
    canary_min_requests: int = 20  # on each side before a canary may roll back by itself
    canary_alpha: float = 0.01  # how sure the one-sided test must be that it does worse
    ray_address: str = ""  # a Ray cluster's job server; "" = training on this machine only
    ray_storage: str = ""  # "" = FTAPP_HOME/ray-storage (a one-machine cluster's)

    @property
    def on_space(self) -> bool:
        return bool(self.space_host)

    @property
    def backups_dir(self) -> Path:
        return self.home / "backups"

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
    def ray_storage_uri(self) -> str:
        """Where Ray jobs keep their data, checkpoints and adapters (ftapp.training.ray_run)."""
        return self.ray_storage or str(self.home / "ray-storage")

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
        auth=_auth_env(env),
        admins=_list_env(env, "FTAPP_ADMINS"),
        demo=_flag_env(env, "FTAPP_DEMO"),
        demo_max_examples=_bounded(
            _int_env(env, "FTAPP_DEMO_MAX_EXAMPLES", 200), "FTAPP_DEMO_MAX_EXAMPLES", 1, 10**6
        ),
        demo_max_steps=_bounded(
            _int_env(env, "FTAPP_DEMO_MAX_STEPS", 60), "FTAPP_DEMO_MAX_STEPS", 1, 10**6
        ),
        demo_max_minutes=_bounded(
            _int_env(env, "FTAPP_DEMO_MAX_MINUTES", 10), "FTAPP_DEMO_MAX_MINUTES", 1, 24 * 60
        ),
        ephemeral=_flag_env(env, "FTAPP_EPHEMERAL"),
        backup_minutes=_bounded(
            _int_env(env, "FTAPP_BACKUP_MINUTES", 0), "FTAPP_BACKUP_MINUTES", 0, 7 * 24 * 60
        ),
        allowed_hosts=_list_env(env, "FTAPP_ALLOWED_HOSTS", lower=True),
        space_host=(env.get("SPACE_HOST") or "").strip().lower() if env.get("SPACE_ID") else "",
        code_checks=_code_checks_env(env),
        judge_api_hosts=_list_env(env, "FTAPP_JUDGE_API_HOSTS", lower=True),
        drift_probes=_bounded(
            _int_env(env, "FTAPP_DRIFT_PROBES", 240), "FTAPP_DRIFT_PROBES", 0, 10_000
        ),  # fmt: skip
        max_drift=_float_env(env, "FTAPP_MAX_DRIFT", DEFAULT_MAX_DRIFT, 0.0, 100.0),
        # The demo keeps them: its visitors' chats are what it shows and trains on.
        api_log_texts=_flag_env(env, "FTAPP_API_LOG_TEXTS")
        or (_flag_env(env, "FTAPP_DEMO") and "FTAPP_API_LOG_TEXTS" not in env),
        canary_min_requests=_bounded(
            _int_env(env, "FTAPP_CANARY_MIN_REQUESTS", 20), "FTAPP_CANARY_MIN_REQUESTS", 1, 10**6
        ),  # fmt: skip
        canary_alpha=_float_env(env, "FTAPP_CANARY_ALPHA", 0.01, 1e-6, 0.5),
        ray_address=(env.get("FTAPP_RAY_ADDRESS") or "").strip(),
        ray_storage=(env.get("FTAPP_RAY_STORAGE") or "").strip(),
        log_retention_days=_bounded(
            _int_env(env, "FTAPP_LOG_RETENTION_DAYS", 30), "FTAPP_LOG_RETENTION_DAYS", 0, 36_500
        ),  # fmt: skip
        session_idle_minutes=_bounded(
            _int_env(env, "FTAPP_SESSION_IDLE_MINUTES", 720),
            "FTAPP_SESSION_IDLE_MINUTES",
            1,
            365 * 24 * 60,
        ),  # fmt: skip
        session_max_hours=_bounded(
            _int_env(env, "FTAPP_SESSION_MAX_HOURS", 168), "FTAPP_SESSION_MAX_HOURS", 1, 24 * 365
        ),
        upload_mb_per_hour=_bounded(
            _int_env(env, "FTAPP_UPLOAD_MB_PER_HOUR", 1000), "FTAPP_UPLOAD_MB_PER_HOUR", 1, 10**6
        ),
    )


def _list_env(env: dict[str, str], name: str, *, lower: bool = False) -> tuple[str, ...]:
    items = (item.strip() for item in (env.get(name) or "").split(","))
    return tuple(item.lower() if lower else item for item in items if item)


def _code_checks_env(env: dict[str, str]) -> bool:
    """Checks that run admins' code are a switch of their own, never on where every visitor may
    be an admin: demo mode, or a Space (where FTAPP_ADMINS=* is common)."""
    wanted = _flag_env(env, "FTAPP_CODE_CHECKS")
    if wanted and (_flag_env(env, "FTAPP_DEMO") or env.get("SPACE_ID")):
        raise ValidationError(
            "FTAPP_CODE_CHECKS=1 is refused in demo mode and on a Space: there, visitors may be "
            "admins, and these checks run any command an admin types"
        )
    return wanted


AUTH_CHOICES = ("auto", "password", "hf")


def _auth_env(env: dict[str, str]) -> str:
    """auto means Hugging Face sign-in inside a Space (Spaces set SPACE_ID), else passwords."""
    chosen = _choice_env(env, "FTAPP_AUTH", AUTH_CHOICES)
    if chosen == "auto":
        return "hf" if env.get("SPACE_ID") else "password"
    return chosen


def _flag_env(env: dict[str, str], name: str) -> bool:
    raw = (env.get(name) or "0").strip().lower()
    if raw not in ("0", "1", "true", "false", "yes", "no"):
        raise ValidationError(f"{name} must be 1 or 0, got {raw!r}")
    return raw in ("1", "true", "yes")


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
