"""The HTTP layer in front of Gradio: what is checked on every request before any route runs.

Gradio's routes trust whoever reaches them; this ASGI middleware (installed by `launch`)
makes each request pass, in order:

1. Host and Origin (ftapp/http_policy.py): a DNS-rebinding page is refused outright.
2. The sign-in session: a password sign-in's cookie must still have its row in SQLite
   (ftapp/signin.py); an ended or expired one is removed from the request, so Gradio sees a
   signed-out visitor. Sign-in attempts are throttled, logged and recorded here, around
   Gradio's own /login; /logout ends the user's sessions.
3. Page sessions: Gradio keys queued results by a `session_hash` the browser makes up; the
   first user to use one owns it, and nobody else may read or drive it.
4. Files: uploads only for admins, within FTAPP_UPLOAD_MB_PER_HOUR; files made for download
   (`ftapp.ui.common.download_path`) only for the user they were made for, for
   `DOWNLOAD_TTL_S`.

Requests under `/v1/` go to the OpenAI-compatible API (ftapp/api.py) after step 1, with their
cookies taken out: it answers to API keys alone, and never reaches Gradio.

Everything refused gets a 4xx with a short JSON `detail` and reaches no route. The role checks
of each event stay in the handlers (`ftapp.ui.common.guarded`); this layer only knows who is
asking, not what they may do in a tab.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import anyio
from starlette.datastructures import Headers
from starlette.requests import Request, cookie_parser

from ftapp.auth import LOCAL_ADMIN, User, resolve_user, single_user_mode
from ftapp.http_policy import host_allowed, origin_allowed
from ftapp.records import Role
from ftapp.signin import (
    end_session,
    end_user_sessions,
    lockout_message,
    record_failure,
    session_user,
    start_session,
    throttle_for,
)
from ftapp.ui.common import DOWNLOAD_TTL_S, download_owner, hf_username_from_session

if TYPE_CHECKING:
    from ftapp.services import Services

log = logging.getLogger(__name__)

API = "/gradio_api"
SIGN_IN_BODY_LIMIT = 64 * 1024
QUEUE_BODY_LIMIT = 16 * 1024 * 1024  # a queued event's inputs: long chats fit
TOO_LARGE = object()  # a body over its limit, refused unread
PAGE_SESSIONS_KEPT = 100_000  # owners remembered; the oldest are forgotten first
UPLOAD_WINDOW_S = 3600.0
STATIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/favicon.ico", f"{API}/assets/")


@dataclass(frozen=True)
class Caller:
    user: User
    tokens: tuple[str, ...] = ()  # the request's valid sign-in tokens

    @property
    def key(self) -> str:
        """Who owns what this caller creates (page sessions, uploads): the user's name, or ""
        for a visitor who is not signed in."""
        return self.user.name if self.user.is_signed_in else ""


class RequestGuard:
    def __init__(self, app: Any, services: Services, bound_host: str, api: Any = None) -> None:
        self.app = app
        self.api = api  # the OpenAI-compatible API (ftapp/api.py): keys, never cookies
        self.services = services
        self.settings = services.settings
        self.bound_host = bound_host
        self._page_owners: OrderedDict[str, str] = OrderedDict()
        self._uploads: dict[str, deque[tuple[float, int]]] = {}
        self._sign_in_locks: dict[str, asyncio.Lock] = {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not host_allowed(headers.get("host"), self.settings, self.bound_host):
            await _refuse(scope, send, 400, "this server does not answer to that host name")
            return
        origin = headers.get("origin")
        if origin is not None and not origin_allowed(origin, self.settings, self.bound_host):
            await _refuse(scope, send, 403, "requests from other websites are refused")
            return
        path, method = scope["path"], scope.get("method", "GET")
        if self.api is not None and (path == "/v1" or path.startswith("/v1/")):
            # The API answers to keys only: a sign-in cookie opens nothing there.
            headers = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
            await self.api({**scope, "headers": headers}, receive, send)
            return
        if path.startswith(STATIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        if path in ("/login", "/login/") and method == "POST":
            await self._sign_in(scope, receive, send)
            return
        scope, caller = await self._identify(scope)
        if path in ("/logout", "/logout/"):
            await self._sign_out(scope, caller)
        elif path == f"{API}/upload" and method == "POST":
            refusal = self._check_upload(scope, caller)
            if refusal:
                await _refuse(scope, send, *refusal)
                return
        elif path.startswith((f"{API}/file=", f"{API}/file/")):
            if not self._may_download(path, caller):
                await _refuse(scope, send, 404, "no such file")
                return
        elif path.startswith(API):
            body, receive = await _peek_json_body(scope, receive, method)
            if body is TOO_LARGE:
                await _refuse(scope, send, 413, "request too large")
                return
            if not self._may_use_page_session(scope, body, caller):
                await _refuse(scope, send, 403, "this page session belongs to another user")
                return
        await self.app(scope, receive, send)

    # --- who is asking -----------------------------------------------------------------------

    async def _identify(self, scope: dict) -> tuple[dict, Caller]:
        """The caller, from the request's session; sign-in cookies that no longer stand for a
        session are taken out of the request (and forgotten by Gradio)."""
        gradio_app = scope.get("app")
        cookie_id = getattr(gradio_app, "cookie_id", None)
        cookies = cookie_parser(Headers(scope=scope).get("cookie", ""))
        names = (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}")
        tokens = {name: cookies[name] for name in names if cookie_id and cookies.get(name)}
        session = scope.get("session") if "session" in scope else None
        user, valid = await anyio.to_thread.run_sync(
            self._lookup, tuple(tokens.values()), hf_username_from_session(session)
        )
        gradio_tokens = getattr(gradio_app, "tokens", None)
        if gradio_tokens is not None:
            for token in tokens.values():
                if token in valid:  # a session that outlived a restart of the app
                    gradio_tokens.setdefault(token, user.name)
                else:
                    gradio_tokens.pop(token, None)
        stale = [name for name, token in tokens.items() if token not in valid]
        if stale:
            kept = "; ".join(f"{k}={v}" for k, v in cookies.items() if k not in stale)
            headers = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
            if kept:
                headers.append((b"cookie", kept.encode("latin-1")))
            scope = {**scope, "headers": headers}
        return scope, Caller(user, tuple(valid))

    def _lookup(self, tokens: tuple[str, ...], hf_username: str | None) -> tuple[User, set]:
        with self.services.db() as db:
            if self.settings.auth == "hf":
                return resolve_user(db, self.settings, None, hf_username), set()
            if single_user_mode(db, self.settings):
                return User(LOCAL_ADMIN, Role.ADMIN), set()
            owners = {token: session_user(db, self.settings, token) for token in tokens}
            valid = {token for token, name in owners.items() if name}
            names = {owners[token] for token in valid}
            if len(names) != 1:  # none, or two cookies of two users: trust neither
                return resolve_user(db, self.settings, ""), set()
            return resolve_user(db, self.settings, names.pop()), valid

    # --- signing in and out ------------------------------------------------------------------

    async def _sign_in(self, scope: dict, receive: Any, send: Any) -> None:
        """Gradio's /login, throttled and logged; a success is recorded as a session before
        the browser gets its cookie."""
        body = await _read_body(receive, SIGN_IN_BODY_LIMIT)
        if body is None:
            await _refuse(scope, send, 413, "sign-in form too large")
            return
        name = await _form_username(scope, body)
        address = (scope.get("client") or ("unknown",))[0]
        # Tries for one name, and from one address, are taken one at a time, so that parallel
        # guesses are counted like sequential ones.
        async with self._lock(f"user:{name}"), self._lock(f"address:{address}"):
            throttle = await anyio.to_thread.run_sync(self._throttle, name, address)
            if throttle.is_locked:
                await anyio.to_thread.run_sync(self._record_failure, name, address, True)
                log.warning("sign-in refused (locked out): %r from %s", name, address)
                # 400 like a wrong password: Gradio's sign-in page shows nothing at all for
                # any other status. The text, and Retry-After, say why.
                retry = {"retry-after": str(max(1, round(throttle.locked_for_s)))}
                await _refuse(scope, send, 400, lockout_message(throttle), retry)
                return
            if throttle.delay_s:
                await asyncio.sleep(throttle.delay_s)
            await self.app(scope, _replay(body, receive), self._recording_send(
                scope, send, name, address))  # fmt: skip

    def _recording_send(self, scope: dict, send: Any, name: str, address: str) -> Any:
        gradio_app = scope.get("app")
        state = {"failed": False}

        async def recording_send(message: dict) -> None:
            if state["failed"]:
                return  # the rest of a response already replaced by an error
            if message["type"] == "http.response.start":
                token = _sign_in_token(message, getattr(gradio_app, "cookie_id", ""))
                try:
                    if message["status"] == 200 and token:
                        await anyio.to_thread.run_sync(self._record_success, token, name, address)
                        log.info("signed in: %s from %s", name, address)
                    elif message["status"] != 200:
                        await anyio.to_thread.run_sync(self._record_failure, name, address, False)
                        log.warning("failed sign-in: %r from %s", name, address)
                except Exception:  # no record, no session: the cookie must not work
                    log.exception("could not record the sign-in of %r", name)
                    getattr(gradio_app, "tokens", {}).pop(token, None)
                    state["failed"] = True
                    await _refuse(scope, send, 503, "sign-in could not be recorded; try again")
                    return
            await send(message)

        return recording_send

    def _throttle(self, name: str, address: str) -> Any:
        with self.services.db() as db:
            return throttle_for(db, name, address)

    def _record_failure(self, name: str, address: str, locked: bool) -> None:
        with self.services.db() as db:
            record_failure(db, name, address, locked=locked)

    def _record_success(self, token: str, name: str, address: str) -> None:
        with self.services.db() as db:
            start_session(db, self.settings, token, name, address)

    async def _sign_out(self, scope: dict, caller: Caller) -> None:
        """Gradio's /logout forgets the user's tokens (all of them unless all_session=false);
        the sessions end the same way here."""
        if not caller.tokens:
            return
        only_this = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(
            "all_session", ["true"])[0].lower() == "false"  # fmt: skip

        def end() -> None:
            with self.services.db() as db:
                if only_this:
                    for token in caller.tokens:
                        end_session(db, token)
                else:
                    end_user_sessions(db, caller.user.name)

        await anyio.to_thread.run_sync(end)

    def _lock(self, key: str) -> asyncio.Lock:
        if len(self._sign_in_locks) > 10_000:  # forget idle locks
            self._sign_in_locks = {k: v for k, v in self._sign_in_locks.items() if v.locked()}
        return self._sign_in_locks.setdefault(key, asyncio.Lock())

    # --- page sessions and files -------------------------------------------------------------

    def _may_use_page_session(self, scope: dict, body: Any, caller: Caller) -> bool:
        for session_hash in _session_hashes(scope, body):
            owner = self._page_owners.get(session_hash)
            if owner is None:
                self._page_owners[session_hash] = caller.key
                if len(self._page_owners) > PAGE_SESSIONS_KEPT:
                    self._page_owners.popitem(last=False)
            elif owner != caller.key:
                log.warning("page session %s of %r refused to %r", session_hash[:6], owner,
                            caller.key)  # fmt: skip
                return False
            else:
                self._page_owners.move_to_end(session_hash)
        return True

    def _check_upload(self, scope: dict, caller: Caller) -> tuple[int, str] | None:
        """None if the caller may upload this request's files, else (status, why)."""
        if caller.user.role != Role.ADMIN:
            return 403, "only admins upload files"
        length = Headers(scope=scope).get("content-length")
        if length is None or not length.isdigit():
            return 411, "an upload must say its length"
        now, size = time.monotonic(), int(length)
        recent = self._uploads.setdefault(caller.key, deque())
        while recent and now - recent[0][0] > UPLOAD_WINDOW_S:
            recent.popleft()
        limit = self.settings.upload_mb_per_hour * 1024 * 1024
        if sum(n for _, n in recent) + size > limit:
            return 413, (f"upload limit reached: at most {self.settings.upload_mb_per_hour} MB "
                         "an hour for each user (FTAPP_UPLOAD_MB_PER_HOUR)")  # fmt: skip
        recent.append((now, size))
        return None

    def _may_download(self, path: str, caller: Caller) -> bool:
        """A file made for download is only for its owner, and only for a while; every other
        file is Gradio's to serve or refuse."""
        raw = path.split("file=", 1)[1] if "file=" in path else path.split("/file/", 1)[1]
        owner, made_at = download_owner(Path(raw))
        if owner is None:
            return True
        fresh = made_at is not None and time.time() - made_at < DOWNLOAD_TTL_S
        return fresh and owner == caller.key and caller.user.is_signed_in


# --- ASGI plumbing ---------------------------------------------------------------------------


async def _refuse(scope: dict, send: Any, status: int, detail: str,
                  more_headers: dict[str, str] | None = None) -> None:  # fmt: skip
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(k.encode(), v.encode()) for k, v in (more_headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return None
        if not message.get("more_body"):
            return b"".join(chunks)


async def _form_username(scope: dict, body: bytes) -> str:
    """The user name of a sign-in form, as Gradio reads it (urlencoded or multipart)."""

    async def no_more() -> dict:
        return {"type": "http.disconnect"}

    try:
        form = await Request(scope, _replay(body, no_more)).form()
        name = form.get("username")
    except Exception:  # a broken form: Gradio refuses it too
        return ""
    return name.strip()[:200] if isinstance(name, str) else ""


def _replay(body: bytes, receive: Any) -> Any:
    """A `receive` that hands on `body` once, then whatever comes next (a disconnect)."""
    sent = False

    async def replayed() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _peek_json_body(scope: dict, receive: Any, method: str) -> tuple[Any, Any]:
    """The JSON body of an API POST (to find its session hash), and a `receive` that still
    delivers it. Anything that isn't JSON goes on unread."""
    content_type = Headers(scope=scope).get("content-type", "")
    if method != "POST" or "json" not in content_type:
        return None, receive
    body = await _read_body(receive, QUEUE_BODY_LIMIT)
    if body is None:
        return TOO_LARGE, receive
    try:
        parsed = json.loads(body or b"null")
    except ValueError:
        parsed = None
    return parsed, _replay(body, receive)


def _session_hashes(scope: dict, body: Any) -> list[str]:
    """Every page session a request names: in its JSON body, its query string, or its path
    (/heartbeat/<hash>, /stream/<hash>/...)."""
    found = []
    if isinstance(body, dict) and body.get("session_hash") is not None:
        found.append(str(body["session_hash"]))
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    found.extend(query.get("session_hash", []))
    parts = scope["path"].removeprefix(API).strip("/").split("/")
    if len(parts) == 2 and parts[0] == "heartbeat":
        found.append(parts[1])
    if len(parts) >= 4 and parts[0] == "stream":  # /stream/<hash>/<run>/<component>/...
        found.append(parts[1])
    return found


def _sign_in_token(message: dict, cookie_id: str) -> str | None:
    """The token Gradio's /login just set, from its Set-Cookie headers."""
    for key, value in message.get("headers", []):
        if key.lower() != b"set-cookie":
            continue
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(value.decode("latin-1"))
        for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
            if name in cookie:
                return cookie[name].value
    return None
