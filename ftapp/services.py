"""Services: the one object the UI and the CLI get everything from (settings, database
connections, the token counter of the default base model, the served base model, the
generation backend (its "production" alias kept in step through ftapp/deploy/production.py)
and the thread that generates evaluation sessions' and evaluation runs' answers in the
background). It builds parts and hands them out; what is done with them lives in the core."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import sqlite_utils

from ftapp.models.registry import BaseModel, bundled_base_model
from ftapp.models.tokens import ChatTokenCounter
from ftapp.serving.backend import (
    AnswerScore,
    Backend,
    ChatRequest,
    Sampling,
    check_answer,
    check_messages,
)
from ftapp.settings import Settings, load_settings
from ftapp.store.db import ThreadConnections, connect, open_db

if TYPE_CHECKING:
    from ftapp.generation.chat import OpenDb
    from ftapp.generation.queue import AnswerGenerator

log = logging.getLogger(__name__)

BACKGROUND_ANSWERS_ON_VLLM = 32  # answers generated at once in the background (vLLM batches)


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
        """A connection for one unit of work (this thread's, kept for its next one)."""
        with self._connections.connection() as db:
            yield db

    @cached_property
    def _connections(self) -> ThreadConnections:
        return ThreadConnections(self.settings.db_path)

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
        from ftapp.deploy.production import sync_production
        from ftapp.serving.setup import make_backend
        from ftapp.training.gpu_memory import has_nvidia_gpu

        backend = make_backend(self.settings, self.served_base, cuda=has_nvidia_gpu())
        # A (re)started server has forgotten the adapters: register production again as soon
        # as it is ready, for clients that call it directly.
        backend.on_ready = lambda: sync_production(self.db, backend, self.served_base)
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

    def answer_likelihood(
        self, model: str, messages: list[dict[str, str]], answer: list[dict[str, str]]
    ) -> AnswerScore:
        """How likely `model` ("base" or a variant's name) finds `answer` (its turns) after the
        conversation `messages`: what preference accuracy and drift compare."""
        from ftapp.serving.setup import served_model

        with closing(connect(self.settings.db_path)) as db:
            served = served_model(db, self.served_base, model)
        messages, answer = check_messages(messages), check_answer(answer)
        return self.backend.answer_likelihood(served, messages, answer)

    @cached_property
    def answer_generator(self) -> AnswerGenerator:
        """The thread that generates, in the background, the answers of evaluation sessions
        (the Arena), of evaluation runs (then scores the runs) and of the drift probes (then
        measures every variant's drift); started on first use. vLLM batches concurrent
        requests; the in-process backend answers one at a time."""
        from ftapp.arena.generation import SESSION_ANSWERS
        from ftapp.deploy.canary_release import check_canary
        from ftapp.deploy.production import erase_old_texts
        from ftapp.evaluation.canary import schedule_canary_runs
        from ftapp.evaluation.drift import drift_work_list
        from ftapp.evaluation.runs import eval_work_list
        from ftapp.generation.queue import AnswerGenerator

        # vLLM's throughput grows with the batch: on 2 cores, 32 answers at a time make
        # 2.3x (base) and 2.8x (adapter) the tokens per second of 8 (bench_serve.py).
        workers = BACKGROUND_ANSWERS_ON_VLLM if self.backend.name == "vllm" else 1
        runs = eval_work_list(self.count_tokens.count_text, self.settings, self.answer_likelihood)
        work_lists = [SESSION_ANSWERS, runs]
        if self.settings.drift_probes:
            work_lists.append(drift_work_list(self.served_base.name, self.settings.drift_probes,
                                              self.answer_likelihood))  # fmt: skip

        failed: set[str] = set()  # canary runs that could not be made: logged once

        def canary_runs(open_db: OpenDb) -> None:  # every new adapter, on every canary set
            with open_db() as db:
                schedule_canary_runs(db, self.served_base, self.settings, failed=failed)

        erased_at = [-3600.0]

        def erase_old_texts_hourly(open_db: OpenDb) -> None:  # FTAPP_LOG_RETENTION_DAYS
            if time.monotonic() - erased_at[0] < 3600:
                return
            erased_at[0] = time.monotonic()
            with open_db() as db:
                erase_old_texts(db, self.settings.log_retention_days)

        def watch_canary_release(open_db: OpenDb) -> None:  # rolls back a worse one by itself
            with open_db() as db:
                rolled = check_canary(db, self.settings.canary_min_requests,
                                      self.settings.canary_alpha)  # fmt: skip
            if rolled is not None:
                log.warning("canary %s rolled back: %s", rolled.canary.candidate,
                            "; ".join(rolled.worse(self.settings.canary_alpha)))  # fmt: skip

        generator = AnswerGenerator(
            self.db,
            self.stream_chat,
            work_lists,
            workers,
            is_ready=lambda: self.backend.status().is_ready,
            before_pass=[canary_runs, erase_old_texts_hourly, watch_canary_release],
        )
        generator.start()
        return generator
