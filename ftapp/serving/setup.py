"""Which backend serves, and what a model name in a request means.

FTAPP_BACKEND picks the backend: "auto" (the default) runs vLLM where it is installed and
falls back to in-process transformers with the reason shown; FTAPP_VLLM_URL uses an existing
vLLM deployment instead of starting one. Model names are "base", a model variant's name, or
"production": whatever was promoted last (ftapp/deploy/production.py).
"""

from __future__ import annotations

from pathlib import Path

import sqlite_utils

from ftapp.errors import ValidationError
from ftapp.models.registry import BaseModel, bundled_base_model, get_base_model
from ftapp.names import BASE, MAX_LORA_RANK, PRODUCTION
from ftapp.serving.backend import Backend, ServedModel
from ftapp.serving.echo import EchoBackend
from ftapp.serving.hf import HFBackend
from ftapp.serving.vllm_backend import VllmBackend
from ftapp.serving.vllm_server import VllmOptions, VllmServer, vllm_importable
from ftapp.settings import Settings
from ftapp.store import jobs as job_store
from ftapp.store.production import latest_promotion


def served_base_model(db: sqlite_utils.Database, settings: Settings) -> BaseModel:
    """The base model the backend serves: FTAPP_BASE_MODEL, or the bundled model."""
    if settings.base_model:
        return get_base_model(db, settings.models_dir, settings.base_model)
    return bundled_base_model(settings.models_dir)


def make_backend(settings: Settings, base: BaseModel, cuda: bool = False) -> Backend:
    """The configured backend, not started: a supervised vLLM server starts in its start()."""
    if settings.vllm_url:
        return VllmBackend(url=settings.vllm_url)
    if settings.backend == "echo":
        return EchoBackend()
    if settings.backend == "hf":
        return HFBackend(base.path, settings.serve_threads, reason="chosen by FTAPP_BACKEND=hf")
    available, why_not = vllm_importable()
    if not available:
        if settings.backend == "vllm":
            raise ValidationError(f"FTAPP_BACKEND=vllm, but {why_not}")
        return HFBackend(base.path, settings.serve_threads,
                         reason=f"{why_not}, so generation runs in this process")  # fmt: skip
    options = VllmOptions(
        model_path=base.path,
        log_path=settings.logs_dir / "vllm.log",
        max_lora_rank=MAX_LORA_RANK,  # whatever training allows, vLLM can serve
        port=settings.vllm_port,
        kv_cache_gb=settings.vllm_kv_cache_gb,
        gpu_memory_utilization=settings.vllm_gpu_memory,
        threads=settings.serve_threads,
        extra_args=settings.vllm_args,
    )
    return VllmBackend(server=VllmServer(options, cuda=cuda))


NOTHING_IN_PRODUCTION = (
    "nothing is in production yet: promote a model in the Deploy tab or with "
    "`ftapp deploy promote NAME`"
)


def served_model(db: sqlite_utils.Database, base: BaseModel, name: str) -> ServedModel:
    """What a request's model name means: the base model, a variant trained on it, or the
    promoted one. An adapter in production is served under the name "production" (vLLM
    registers it so); the base model in production is simply the base model."""
    if not name or name == BASE:
        return ServedModel(BASE)
    if name == PRODUCTION:
        promotion = latest_promotion(db)
        if promotion is None:
            raise ValidationError(NOTHING_IN_PRODUCTION)
        promoted = served_model(db, base, promotion.model)
        if promoted.adapter_path is None:
            return promoted
        return ServedModel(PRODUCTION, promoted.adapter_path)
    variant = job_store.get_variant(db, name)
    if variant.base_model != base.name:
        raise ValidationError(
            f"model {name!r} is an adapter for {variant.base_model}, but this app serves "
            f"{base.name} (set FTAPP_BASE_MODEL={variant.base_model} to serve it)"
        )
    path = Path(variant.path)
    if not (path / "adapter_config.json").is_file():
        raise ValidationError(f"model {name!r}: its adapter folder {path} is missing")
    return ServedModel(variant.name, path)


def servable_models(db: sqlite_utils.Database, base: BaseModel) -> list[str]:
    """ "base" and every variant trained on the served base model, newest first."""
    variants = [v for v in job_store.list_variants(db) if v.base_model == base.name]
    return [BASE] + [v.name for v in reversed(variants)]
