"""A scripted OpenAI-compatible judge for tests: an HTTP server on 127.0.0.1 (port 0, in a
thread) that implements GET /v1/models and POST /v1/chat/completions, records every request
(path, headers, Authorization included, JSON body), and answers each chat request with whatever
`reply(body)` returns, or with an HTTP error when `fail_with` is set (its body `raw_body` when
given: a judge may answer anything). The judge is an external service, so this is the network
beyond loopback being faked, not ftapp. It listens on 127.0.0.1, which `localhost` names too.

    with JudgeStub(reply=lambda body: "A") as stub:
        judge_once(JudgeConfig(url=stub.url, model="judge"), ...)
        stub.requests[0].body["messages"]
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ANSWER = r"\[The Start of Assistant {0}'s Answer\]\n(.*?)\n\[The End of Assistant {0}'s Answer\]"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any] | None


def shown_answers(body: dict[str, Any]) -> tuple[str, str]:
    """The answers a chat request shows the judge as A and as B (MT-Bench's markers)."""
    text = body["messages"][-1]["content"]
    found = [re.search(_ANSWER.format(side), text, re.DOTALL) for side in "AB"]
    assert all(found), f"no A/B answers in the judge prompt: {text!r}"
    return found[0].group(1), found[1].group(1)  # type: ignore[union-attr]


def prefers_longer(body: dict[str, Any]) -> str:
    """A judge with a real preference: the longer answer, wherever it is shown."""
    a, b = shown_answers(body)
    return "[[A]]" if len(a) > len(b) else "[[B]]" if len(b) > len(a) else "tie"


def always_a(body: dict[str, Any]) -> str:
    """A judge with nothing but position bias."""
    return "A"


class JudgeStub:
    """The scripted endpoint; a context manager, `url` set once it listens."""

    def __init__(
        self,
        reply: Callable[[dict[str, Any]], str] = always_a,
        models: tuple[str, ...] = ("judge",),
        fail_with: int | None = None,
        delay_s: float = 0.0,
        raw_body: str | None = None,
    ) -> None:
        self.reply = reply
        self.models = models
        self.fail_with = fail_with  # an HTTP status every request gets instead of an answer
        self.delay_s = delay_s  # before answering a chat request: for timeout tests
        self.raw_body = raw_body  # every reply's whole body (status fail_with, or 200)
        self.requests: list[Request] = []
        self.url = ""
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> JudgeStub:
        stub = self

        class Handler(_Handler):
            owner = stub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval: shutdown() waits for it, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def chat_bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.path == "/v1/chat/completions" and r.body]

    def record(self, request: Request) -> None:
        with self._lock:  # handlers run in threads of their own
            self.requests.append(request)


class _Handler(BaseHTTPRequestHandler):
    owner: JudgeStub

    def do_GET(self) -> None:
        self.owner.record(Request("GET", self.path, self._headers(), None))
        if self.owner.raw_body is not None:
            return self._send(self.owner.fail_with or 200, self.owner.raw_body.encode())
        if self.owner.fail_with:
            return self._error(self.owner.fail_with)
        if self.path != "/v1/models":
            return self._error(404)
        data = [{"id": name, "object": "model", "owned_by": "stub"} for name in self.owner.models]
        self._json(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        self.owner.record(Request("POST", self.path, self._headers(), body))
        if self.owner.delay_s:
            time.sleep(self.owner.delay_s)
        if self.owner.raw_body is not None:
            return self._send(self.owner.fail_with or 200, self.owner.raw_body.encode())
        if self.owner.fail_with:
            return self._error(self.owner.fail_with)
        if self.path != "/v1/chat/completions":
            return self._error(404)
        text = self.owner.reply(body)
        self._json(200, {
            "id": "chatcmpl-stub", "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
        })  # fmt: skip

    def _headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    def _error(self, status: int) -> None:
        message = f"stub error {status} for {self.path}"
        self._json(status, {"error": {"message": message, "type": "stub", "code": status}})

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: int, data: bytes, content_type: str = "text/html") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass
