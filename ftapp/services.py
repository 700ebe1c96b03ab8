"""Services: the one object the UI and the CLI get everything from (settings, database
connections, the token counter of the default base model, the generation backend and the
thread that generates evaluation sessions' and evaluation runs' answers in the background,
and production: promoting a model, keeping the engine's "production" name in step with it,
the logged production chat)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import sqlite_utils

from ftapp.models.registry import BaseModel, bundled_base_model
from ftapp.models.tokens import ChatTokenCounter
from ftapp.serving.backend import Backend, ChatRequest, Sampling, check_messages
from ftapp.settings import Settings, load_settings
from ftapp.store.db import connect, open_db

if TYPE_CHECKING:
    from ftapp.deploy.production import Endpoint, ProductionReply, Promotion
    from ftapp.evaluation.batch import AnswerGenerator


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

    # --- generation ---------------------------------------------------------------------------

    @cached_property
    def served_base(self) -> BaseModel:
        from ftapp.serving.setup import served_base_model

        with self.db() as db:
            return served_base_model(db, self.settings)

    @cached_property
    def backend(self) -> Backend:
        """The generation backend, started on first use (vLLM takes tens of seconds on CPU)."""
        from ftapp.serving.setup import make_backend
        from ftapp.training.gpu_memory import has_nvidia_gpu

        backend = make_backend(self.settings, self.served_base, cuda=has_nvidia_gpu())
        if backend.name == "vllm":
            # A (re)started server has forgotten the adapters: register production again as
            # soon as it is ready, for clients that call it directly.
            backend.on_ready = self.sync_production  # type: ignore[attr-defined]
        backend.start()
        return backend

    def servable_models(self) -> list[str]:
        from ftapp.serving.setup import servable_models

        with self.db() as db:
            return servable_models(db, self.served_base)

    def stream_chat(
        self, model: str, messages: list[dict[str, str]], sampling: Sampling
    ) -> Iterator[str]:
        """The reply of `model` ("base" or a variant's name) to a conversation, in pieces."""
        from ftapp.serving.setup import served_model

        with closing(connect(self.settings.db_path)) as db:
            served = served_model(db, self.served_base, model)
        request = ChatRequest(served, check_messages(messages), sampling)
        return self.backend.stream_chat(request)

    # --- production ---------------------------------------------------------------------------

    def current_production(self) -> Promotion | None:
        from ftapp.deploy.production import current_production

        with self.db() as db:
            return current_production(db)

    def promote(self, model: str, user: str, note: str = "") -> tuple[Promotion, str]:
        """Promote `model` and tell the engine at once; returns the promotion and a line
        saying where production is served now."""
        from ftapp.deploy.production import promote

        with self.db() as db:
            promotion = promote(db, self.served_base, model, user, note)
        return promotion, self.sync_production()

    def rollback(self, user: str) -> tuple[Promotion, str]:
        from ftapp.deploy.production import rollback

        with self.db() as db:
            promotion = rollback(db, self.served_base, user)
        return promotion, self.sync_production()

    def sync_production(self) -> str:
        """Make the vLLM server serve the promoted adapter as "production" (and nothing under
        that name when the base model or nothing is promoted); returns a line for people. The
        in-process backends need nothing: they resolve "production" at every request."""
        from ftapp.deploy.production import PRODUCTION, current_production
        from ftapp.errors import ServingError
        from ftapp.serving.backend import BASE
        from ftapp.serving.setup import served_model

        backend = self.backend
        if backend.name != "vllm":
            return f"the {backend.name} backend answers as {PRODUCTION!r} in the Playground"
        with self.db() as db:
            current = current_production(db)
            served = served_model(db, self.served_base, PRODUCTION) if current else None
        adapter = served.adapter_path if served else None
        try:
            backend.sync_adapter(PRODUCTION, adapter)  # type: ignore[attr-defined]
        except ServingError as exc:
            return f"vLLM will get it when it is ready ({exc})"
        url = backend.url  # type: ignore[attr-defined]
        if current is None or current.model == BASE:
            return f"vLLM at {url}: nothing registered as {PRODUCTION!r} (base model)"
        return f"vLLM at {url} serves {current.model!r} as {PRODUCTION!r}"

    def production_endpoint(self) -> Endpoint:
        """The OpenAI-compatible URL and client snippets for production, for this backend."""
        from ftapp.deploy.production import production_endpoint
        from ftapp.errors import ServingError
        from ftapp.serving.backend import BASE

        backend = self.backend
        if backend.name != "vllm":
            return production_endpoint(backend.name, None, self.current_production())
        try:
            base_name = backend.base_name()  # type: ignore[attr-defined]
        except ServingError:  # starting: the name ftapp's own server gives it
            base_name = BASE
        own_server = backend.server is not None  # type: ignore[attr-defined]
        url = backend.url  # type: ignore[attr-defined]
        return production_endpoint("vllm", url, self.current_production(), base_name, own_server)

    def stream_production_chat(
        self, messages: list[dict[str, str]], sampling: Sampling, user: str
    ) -> ProductionReply:
        """The production model's reply, logged as a production request (its id included)."""
        from ftapp.deploy.production import stream_production_chat

        return stream_production_chat(
            self.db, self.backend, self.served_base, messages, sampling, user
        )

    @cached_property
    def answer_generator(self) -> AnswerGenerator:
        """The thread that generates, in the background, the answers of evaluation sessions
        (the Arena) and of evaluation runs (then scores the runs); started on first use.
        vLLM batches concurrent requests; the in-process backend answers one at a time."""
        from ftapp.arena.generation import SESSION_ANSWERS
        from ftapp.evaluation.batch import AnswerGenerator
        from ftapp.evaluation.runs import eval_work_list

        workers = 8 if self.backend.name == "vllm" else 1
        work_lists = [SESSION_ANSWERS, eval_work_list(self.count_tokens.count_text, self.settings)]
        generator = AnswerGenerator(
            self.db,
            self.stream_chat,
            work_lists,
            workers,
            is_ready=lambda: self.backend.status().is_ready,
        )
        generator.start()
        return generator
