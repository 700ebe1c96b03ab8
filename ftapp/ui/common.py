"""What every tab shares: the per-handler guard, and turning core errors into messages."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from ftapp.auth import User, require_role, resolve_user
from ftapp.errors import FtappError
from ftapp.records import Role

log = logging.getLogger(__name__)


def guarded(role: Role) -> Callable:
    """Decorate an event handler: check the caller's role on the server (every Gradio event is
    also a public API endpoint), and show core errors as messages instead of tracebacks.

    The handler must take `request: gr.Request` as a positional parameter. A generator
    handler (a streaming reply) is checked before its first item and guarded while it runs.
    """

    def decorate(handler: Callable) -> Callable:
        def check(args: tuple, kwargs: dict[str, Any]) -> None:
            request = next((a for a in args if isinstance(a, gr.Request)), None)
            require_role(current_user(request or kwargs.get("request")), role)

        if inspect.isgeneratorfunction(handler):

            @functools.wraps(handler)
            def stream(*args: Any, **kwargs: Any) -> Any:
                try:
                    check(args, kwargs)
                    yield from handler(*args, **kwargs)
                except FtappError as exc:
                    raise gr.Error(str(exc), print_exception=False) from None

            return stream

        @functools.wraps(handler)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                check(args, kwargs)
                return handler(*args, **kwargs)
            except FtappError as exc:
                raise gr.Error(str(exc), print_exception=False) from None

        return run

    return decorate


def current_user(request: gr.Request | None) -> User:
    return resolve_user(getattr(request, "username", None) if request else None)


def download_path(file_name: str) -> Path:
    """A fresh private folder for a file handed to the browser (Gradio copies it to its cache);
    never a path inside FTAPP_HOME, which Gradio must not serve."""
    return Path(tempfile.mkdtemp(prefix="ftapp-download-")) / Path(file_name).name


def notice(text: str) -> None:
    gr.Info(text)


def to_int(value: Any, field: str, *, minimum: int | None = None) -> int:
    from ftapp.errors import ValidationError

    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{field} must be a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValidationError(f"{field} must be at least {minimum}, got {number}")
    return number


def escape_markdown(text: str) -> str:
    """User text shown literally inside Markdown: no HTML, no formatting.

    Quotes stay as they are: `&#x27;` would have its '#' escaped below and show as typed."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", html.escape(text, quote=False))


def chat_messages(conversation: list[dict[str, str]]) -> list[dict[str, str]]:
    """A conversation for a gr.Chatbot, which renders HTML: model and user text is shown as
    typed. System messages are not shown."""
    return [{"role": m["role"], "content": html.escape(m["content"])} for m in conversation
            if m["role"] in ("user", "assistant")]  # fmt: skip
