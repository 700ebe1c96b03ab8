"""The OpenAI-compatible API a team's services call: `/v1/models`, `/v1/chat/completions`
(streaming or not) and `/v1/feedback`, served by the web app on its own port beside the pages
(ftapp/ui/http_guard.py hands every `/v1/` request here, with its cookies taken out).

Every call needs an API key (ftapp/deploy/api_keys.py): `Authorization: Bearer ftk-...`.
Without one, with a wrong or revoked one, or for a model the key may not call: 401; over the
key's rate: 429 with Retry-After. Errors have OpenAI's shape, `{"error": {"message", "type",
"param", "code"}}`, so the `openai` client raises its usual exceptions. Each chat is one
production request (deploy/production.stream_production_chat), logged with the key's name,
the model that answered, token counts and latencies, like the Playground's production chats;
its id (`chatcmpl-<request id>`) is what /v1/feedback rates. The prompt and answer are kept
only with FTAPP_API_LOG_TEXTS=1 (the demo's default), for privacy.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ftapp.deploy.api_keys import ANY_MODEL, RateLimiter, authenticate, may_call
from ftapp.deploy.production import set_feedback, stream_production_chat
from ftapp.errors import Forbidden, FtappError, NotFound, ServingError, Unauthorized
from ftapp.names import BASE, PRODUCTION
from ftapp.services import Services
from ftapp.serving.backend import MAX_NEW_TOKENS, sampling_from_fields
from ftapp.store import jobs as job_store
from ftapp.store.production import ApiKey, latest_promotion

# Every route of the API (the security tests call each without a key).
ROUTES = (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/feedback"))
DEFAULT_MAX_TOKENS = 256
BODY_LIMIT = 4 * 1024 * 1024
ID_PREFIX = "chatcmpl-"
# What OpenAI's API takes that ftapp can't honour: refused by name rather than ignored.
UNSUPPORTED = ("stop", "tools", "functions", "logit_bias", "response_format", "logprobs")


class ApiError(Exception):
    """A refusal in OpenAI's error shape: HTTP status, message, type, code, the parameter."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.code, self.param = status, kind, code, param
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": str(self), "type": self.kind, "param": self.param,
                          "code": self.code}}  # fmt: skip
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def build_api(services: Services) -> Starlette:
    limiter = RateLimiter()

    def caller(request: Request) -> ApiKey:
        """The request's key, counted against its rate (sync: runs in a worker thread)."""
        try:
            with services.db() as db:
                key = authenticate(db, request.headers.get("authorization"))
        except Unauthorized as exc:
            raise ApiError(401, str(exc), "invalid_request_error", "invalid_api_key") from None
        wait = limiter.check(key)
        if wait is not None:
            raise ApiError(
                429, f"key {key.name!r} is over its {key.rate_per_min} requests a minute",
                "rate_limit_error", "rate_limit_exceeded",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )  # fmt: skip
        return key

    async def models(request: Request) -> Response:
        key = await run_in_threadpool(caller, request)
        names = await run_in_threadpool(_callable_models, services, key)
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "ftapp"} for n in names]
        return JSONResponse({"object": "list", "data": data})

    async def chat(request: Request) -> Response:
        key = await run_in_threadpool(caller, request)
        body = await _json_body(request)
        model, messages, sampling, stream, include_usage = _chat_request(body)
        if not may_call(key, model):
            raise ApiError(401, f"key {key.name!r} may not call model {model!r}",
                           "invalid_request_error", "model_not_allowed", "model")  # fmt: skip

        def start():
            return stream_production_chat(
                services.db, services.backend, services.served_base, messages, sampling,
                f"key:{key.name}", model=model, key_name=key.name,
                count_prompt=lambda checked: services.count_tokens([checked])[0],
                keep_text=services.settings.api_log_texts,
            )  # fmt: skip

        try:
            reply = await run_in_threadpool(start)
        except NotFound as exc:
            raise ApiError(404, str(exc), "invalid_request_error", "model_not_found",
                           "model") from None  # fmt: skip
        headers = {"x-request-id": str(reply.request_id)}
        completion_id, created = f"{ID_PREFIX}{reply.request_id}", int(time.time())
        if stream:
            chunks = _chunks(services, reply, completion_id, created, model, sampling,
                             include_usage)  # fmt: skip
            return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)
        try:
            text = await run_in_threadpool(lambda: "".join(reply.pieces))
        except ServingError as exc:
            raise ApiError(503, str(exc), "server_error", "engine_unavailable") from None
        usage = await run_in_threadpool(_usage, services, reply.request_id, text)
        return JSONResponse({
            "id": completion_id, "object": "chat.completion", "created": created,
            "model": model, "choices": [{
                "index": 0, "message": {"role": "assistant", "content": text},
                "finish_reason": _finish(usage, sampling.max_new_tokens),
            }], "usage": usage,
        }, headers=headers)  # fmt: skip

    async def feedback(request: Request) -> Response:
        key = await run_in_threadpool(caller, request)
        body = await _json_body(request)
        request_id = _request_id(body.get("request_id"))
        value = _rating(body.get("rating"))
        comment = body.get("comment")
        if comment is not None and not isinstance(comment, str):
            raise ApiError(400, "comment must be text", "invalid_request_error", None, "comment")

        def rate():
            with services.db() as db:
                return set_feedback(db, request_id, f"key:{key.name}", value, comment)

        try:
            rated = await run_in_threadpool(rate)
        except Forbidden:
            raise ApiError(403, f"request {request_id} was made with another key",
                           "permission_error", None, "request_id") from None  # fmt: skip
        return JSONResponse({"request_id": f"{ID_PREFIX}{rated.id}", "rating": rated.feedback,
                             "comment": rated.feedback_comment})  # fmt: skip

    def handled(endpoint):
        async def run(request: Request) -> Response:
            try:
                return await endpoint(request)
            except ApiError as exc:
                return exc.response()
            except NotFound as exc:
                return ApiError(404, str(exc), "invalid_request_error", "not_found").response()
            except FtappError as exc:  # a bad message, sampling value, nothing promoted
                return ApiError(400, str(exc), "invalid_request_error").response()

        return run

    endpoints = {"/v1/models": models, "/v1/chat/completions": chat, "/v1/feedback": feedback}
    return Starlette(routes=[Route(path, handled(endpoints[path]), methods=[method])
                             for method, path in ROUTES])  # fmt: skip


def _callable_models(services: Services, key: ApiKey) -> list[str]:
    """The model names this key may send: production when something is promoted, and the
    named variants it is allowed (every variant on the served base with "*")."""
    with services.db() as db:
        names = [PRODUCTION] if latest_promotion(db) is not None else []
        served = services.served_base.name
        variants = [v.name for v in job_store.list_variants(db) if v.base_model == served]
    everything = [*names, BASE, *variants]
    if ANY_MODEL in key.models:
        return everything
    return [name for name in everything if name in key.models]


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > BODY_LIMIT:
        raise ApiError(413, f"the request body is over {BODY_LIMIT // 2**20} MB",
                       "invalid_request_error")  # fmt: skip
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise ApiError(400, f"the body is not JSON: {exc}", "invalid_request_error") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", "invalid_request_error")
    return body


def _chat_request(body: dict[str, Any]):
    """model, messages, sampling, stream, include_usage from a chat completions body; each bad
    field refused by name."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ApiError(400, "model is required", "invalid_request_error", None, "model")
    for name in UNSUPPORTED:
        if body.get(name) not in (None, [], False):
            raise ApiError(400, f"{name} is not supported by ftapp", "invalid_request_error",
                           "unsupported_parameter", name)  # fmt: skip
    if body.get("n", 1) != 1:
        raise ApiError(400, "n must be 1", "invalid_request_error", None, "n")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise ApiError(400, "messages must be a list", "invalid_request_error", None, "messages")
    messages = [_message(m, i) for i, m in enumerate(raw_messages, 1)]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) or DEFAULT_MAX_TOKENS
    if isinstance(max_tokens, int) and max_tokens > MAX_NEW_TOKENS:
        raise ApiError(400, f"max_tokens is at most {MAX_NEW_TOKENS}", "invalid_request_error",
                       None, "max_tokens")  # fmt: skip
    sampling = sampling_from_fields(  # OpenAI's defaults: temperature 1, top_p 1
        temperature=_or(body.get("temperature"), 1.0), top_p=_or(body.get("top_p"), 1.0),
        max_new_tokens=max_tokens, seed=body.get("seed"),
    )  # fmt: skip
    options = body.get("stream_options") or {}
    include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
    return model.strip(), messages, sampling, bool(body.get("stream")), include_usage


def _or(value: Any, default: float) -> Any:
    return default if value is None else value


def _message(message: Any, position: int) -> dict[str, str]:
    """One message, its content text or a list of text parts (what the openai client sends)."""
    if not isinstance(message, dict):
        raise ApiError(400, f"message {position} must be an object", "invalid_request_error",
                       None, "messages")  # fmt: skip
    content = message.get("content")
    if isinstance(content, list):
        if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
            raise ApiError(400, f"message {position}: only text parts are supported",
                           "invalid_request_error", None, "messages")  # fmt: skip
        content = "".join(str(p.get("text", "")) for p in content)
    return {"role": message.get("role"), "content": content}


def _chunks(services, reply, completion_id, created, model, sampling, include_usage
            ) -> Iterator[str]:  # fmt: skip
    """The reply as server-sent events in OpenAI's chunk format, then [DONE]."""

    def event(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
        chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                 "model": model, "choices": [{"index": 0, "delta": delta,
                                              "finish_reason": finish}]}  # fmt: skip
        if usage is not None:
            chunk = {**chunk, "choices": [], "usage": usage}
        return f"data: {json.dumps(chunk)}\n\n"

    yield event({"role": "assistant", "content": ""})
    text: list[str] = []
    try:
        for piece in reply.pieces:
            if piece:
                text.append(piece)
                yield event({"content": piece})
    except FtappError as exc:
        error = {"error": {"message": str(exc), "type": "server_error", "param": None,
                           "code": "engine_unavailable"}}  # fmt: skip
        yield f"data: {json.dumps(error)}\n\n"
        return
    finally:
        # A client that hangs up ends this generator early: stop the generation and log the
        # reply as stopped (deploy/production._logged), as the Playground's Stop does.
        reply.pieces.close()
    usage = _usage(services, reply.request_id, "".join(text))
    yield event({}, _finish(usage, sampling.max_new_tokens))
    if include_usage:
        yield event({}, usage=usage)
    yield "data: [DONE]\n\n"


def _usage(services: Services, request_id: int, text: str) -> dict[str, int]:
    from ftapp.store.production import get_request

    with services.db() as db:
        prompt = get_request(db, request_id).prompt_tokens or 0
    completion = services.count_tokens.count_text([text])[0] if text else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}  # fmt: skip


def _finish(usage: dict[str, int], max_new_tokens: int) -> str:
    return "length" if usage["completion_tokens"] >= max_new_tokens else "stop"


def _request_id(value: Any) -> int:
    text = str(value or "").strip().removeprefix(ID_PREFIX)
    if not text.isdigit():
        raise ApiError(400, "request_id: the id of a chat completion (chatcmpl-N)",
                       "invalid_request_error", None, "request_id")  # fmt: skip
    return int(text)


def _rating(value: Any) -> int | None:
    ratings = {"good": 1, "bad": -1, 1: 1, -1: -1, "up": 1, "down": -1, None: None}
    if isinstance(value, bool) or not isinstance(value, str | int | None) or value not in ratings:
        raise ApiError(400, "rating: 'good' or 'bad' (or null to take it back)",
                       "invalid_request_error", None, "rating")  # fmt: skip
    return ratings[value]
