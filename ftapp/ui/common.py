"""What every tab shares: the per-handler guard, and turning core errors into messages."""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import logging
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import gradio as gr

from ftapp.auth import RANK, User, require_role, resolve_user
from ftapp.errors import FtappError, ValidationError
from ftapp.records import Role
from ftapp.ui.arguments import argument_checker
from ftapp.ui.handler_times import HANDLER_TIMES

if TYPE_CHECKING:
    from ftapp.services import Services

log = logging.getLogger(__name__)

T = TypeVar("T")

# How often a streaming reply redraws the page. Every update re-renders the whole reply in
# the browser; at vLLM's token rate a long reply kept Chromium's main thread so busy that a
# click on Stop waited for seconds. Ten redraws a second still reads as live typing.
STREAM_INTERVAL_SECONDS = 0.1


# What Blocks.load takes: (handler, inputs, outputs).
Load = tuple[Callable, Any, Any]


@dataclass(frozen=True)
class TabWiring:
    """What a tab, or a section of one, leaves to the page (or the tab composing it) to wire;
    every `build_*_tab` and section builder returns one, and sections add up with `+`.

    - on_load: run when the page loads, each only for the role its guarded handler requires
      (ftapp_role): the choices and tables as they are now, not as they were at start-up.
    - timers: polling timers, started for admins only.
    - admin_only: blocks (a tab, a group) shown only to admins.
    - changes: events after which the tab's other sections redraw (`then` them).
    - redraw: how this section redraws after a change elsewhere, keeping its place.
    - reopen: how it redraws from the top, after its data was replaced (an import).
    """

    on_load: tuple[Load, ...] = ()
    timers: tuple[gr.Timer, ...] = ()
    admin_only: tuple[Any, ...] = ()
    changes: tuple[Any, ...] = ()
    redraw: tuple[Load, ...] = ()
    reopen: tuple[Load, ...] = ()

    def __add__(self, other: TabWiring) -> TabWiring:
        return TabWiring(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def require(value: T | None, message: str) -> T:
    """The value of a field a handler can't do without (a picked run, a selected example), or
    the page's "choose X first" message as a ValidationError."""
    if value is None or value == "" or value == []:
        raise ValidationError(message)
    return value


def guarded(services: Services, role: Role, labels: Mapping[str, str] | None = None) -> Callable:
    """Decorate an event handler: check the caller's role on the server (every Gradio event is
    also an API endpoint, hidden or not), then each argument against the handler's type hints
    (a caller may send any JSON value: ui/arguments.py), and show core errors as messages, not
    tracebacks, in the page's words: a refusal "field: reason" names the field by its label
    in `labels` (the core speaks of `lora_rank`, the page of "LoRA rank"). Any other failure
    is logged and answered with a sentence of no detail.

    The handler must take `request: gr.Request` as a positional parameter. A generator
    handler (a streaming reply) is checked before its first item and guarded while it runs.
    Every call's time is recorded, refused ones too (ui/handler_times.py).
    The role is kept on the wrapper (`ftapp_role`): a test checks every event has one.
    """

    def decorate(handler: Callable) -> Callable:
        check_arguments = argument_checker(handler)
        action_name = f"{handler.__module__.rsplit('.', 1)[-1]}.{handler.__name__}"

        def check(args: tuple, kwargs: dict[str, Any]) -> None:
            request = next((a for a in args if isinstance(a, gr.Request)), None)
            require_role(current_user(services, request or kwargs.get("request")), role)
            # After the role: a caller refused by role learns nothing about the inputs.
            check_arguments(args, kwargs)

        @contextlib.contextmanager
        def errors_as_messages() -> Iterator[None]:
            started = time.perf_counter()
            try:
                yield
            except FtappError as exc:
                raise shown_error(exc, labels) from None
            except gr.Error:
                raise
            except Exception:
                raise hidden_error(handler) from None
            finally:
                HANDLER_TIMES.record(action_name, time.perf_counter() - started)

        if inspect.isgeneratorfunction(handler):

            @functools.wraps(handler)
            def stream(*args: Any, **kwargs: Any) -> Any:
                with errors_as_messages():
                    check(args, kwargs)
                    yield from handler(*args, **kwargs)

            stream.ftapp_role = role
            return stream

        @functools.wraps(handler)
        def run(*args: Any, **kwargs: Any) -> Any:
            with errors_as_messages():
                check(args, kwargs)
                return handler(*args, **kwargs)

        run.ftapp_role = role
        return run

    return decorate


def shown_error(exc: FtappError, labels: Mapping[str, str] | None = None) -> gr.Error:
    """A core error as the page's message box, the field it names called by its label.
    Gradio renders the message as HTML, and core messages quote what the user typed (a
    dataset name, a field): escaped, it reads as typed."""
    message = in_page_words(str(exc), labels or {})
    return gr.Error(html.escape(message, quote=False), print_exception=False)


def in_page_words(message: str, labels: Mapping[str, str]) -> str:
    """A core refusal "field: reason" with the field named as the page labels it."""
    field, sep, reason = message.partition(": ")
    return f"{labels[field]}: {reason}" if sep and field in labels else message


SERVER_ERROR = "something went wrong on the server; the error is in the app's log"


def hidden_error(handler: Callable) -> gr.Error:
    """Any failure that is not a core error, with the traceback in the log and none of it in
    the answer: its text can hold SQL, file paths or a library's internals (launch shows
    exception texts to callers). Call it inside the `except` block."""
    log.exception("event handler %s failed", handler.__qualname__)
    return gr.Error(SERVER_ERROR, print_exception=False)


def fresh_choices_on_focus(
    services: Services, dropdown: gr.Dropdown, list_choices: Callable[[], list], api_name: str
) -> None:
    """Offer what exists now whenever an admin opens the picker. The page fills its lists when
    it loads, so a version frozen or an adapter trained since (in another tab) was missing
    until a reload. Only the choices change, never the value: a pick made meanwhile stays."""

    @guarded(services, Role.ADMIN)
    def reload(request: gr.Request) -> dict:
        return gr.update(choices=list_choices())

    dropdown.focus(reload, None, [dropdown], api_name=api_name, show_progress="hidden")


def version_labels(services: Services) -> list[str]:
    """Every frozen dataset version, newest first, as `name@vN`."""
    from ftapp.store.versions import all_versions

    with services.db() as db:
        return [v.label for v in all_versions(db)]


def contestant_names(services: Services) -> list[str]:
    """Everything that can answer on the served base model: base, variants, prompt variants."""
    from ftapp.arena.contestants import all_contestants

    with services.db() as db:
        return [c.name for c in all_contestants(db, services.served_base)]


def role_gate(services: Services, role: Role) -> Callable:
    """A page-load step that lets the steps chained after it with `.success()` run only for
    users with `role`. It fails without a message: the page shows what the user may see."""

    def gate(request: gr.Request) -> None:
        user = current_user(services, request)
        if RANK[user.role] < RANK[role]:
            raise gr.Error("not for this role", visible=False, print_exception=False)

    gate.ftapp_role = Role.VISITOR  # anyone may ask; it tells nothing but yes or no
    return gate


def current_user(services: Services, request: gr.Request | None) -> User:
    """The signed-in user of a request, looked up on every call: a removed user or a changed
    role takes effect at once."""
    username = getattr(request, "username", None) if request else None
    hf_username = signed_in_hf_username(request) if services.settings.auth == "hf" else None
    with services.db() as db:
        return resolve_user(db, services.settings, username, hf_username)


def signed_in_hf_username(request: gr.Request | None) -> str | None:
    """The Hugging Face account of the request's OAuth session (Gradio keeps it in the signed
    session cookie), or None: not signed in, expired, or no OAuth in this app."""
    # Not `request.session`: it asserts when the app has no SessionMiddleware (no LoginButton).
    http_request = getattr(request, "request", None) if request else None
    return hf_username_from_session(
        http_request.scope.get("session") if http_request is not None else None
    )


def hf_username_from_session(session: dict | None) -> str | None:
    info = (session or {}).get("oauth_info") or {}
    expires_at = info.get("expires_at")
    if expires_at is not None and expires_at < time.time():
        return None
    return (info.get("userinfo") or {}).get("preferred_username") or None


# Files made for a user to download (exports, reports, the everything zip) live under
# <Gradio's cache>/ftapp-downloads/<user>/<random>/<name>: Gradio serves its cache as it is,
# and ftapp/ui/http_guard.py serves this part only to <user>, for DOWNLOAD_TTL_S.
DOWNLOAD_TTL_S = 15 * 60


def downloads_root() -> Path:
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve() / "ftapp-downloads"


def download_path(user: User, file_name: str) -> Path:
    """A fresh folder, private to `user`, for a file handed to the browser; never a path inside
    FTAPP_HOME, which Gradio must not serve. Only the last part of `file_name` is kept, so a
    name like "../../x" can't lead anywhere else."""
    name = Path(file_name).name
    if name in ("", ".", ".."):
        name = "download"
    clear_downloads(older_than_s=DOWNLOAD_TTL_S)
    folder = downloads_root() / (user.name or "visitor") / secrets.token_hex(16)
    folder.mkdir(parents=True)
    return folder / name


def download_owner(path: Path) -> tuple[str | None, float | None]:
    """(owner, when it was made) of a file made by `download_path`; (None, None) for any other
    file; (owner, None) for a folder, or a file that is gone."""
    root = downloads_root()
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return None, None
    if not resolved.is_relative_to(root):
        return None, None
    parts = resolved.relative_to(root).parts
    if len(parts) < 3:
        return (parts[0] if parts else ""), None
    try:
        return parts[0], (root / parts[0] / parts[1]).stat().st_mtime
    except OSError:
        return parts[0], None


def clear_downloads(older_than_s: float = 0.0) -> None:
    """Delete the download folders made more than `older_than_s` ago (0: all of them)."""
    now = time.time()
    for folder in downloads_root().glob("*/*"):
        try:
            if now - folder.stat().st_mtime >= older_than_s:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def notice(text: str) -> None:
    gr.Info(text)


def to_int(value: Any, field: str, *, minimum: int | None = None) -> int:
    from ftapp.serving.backend import whole_number

    return whole_number(value, field, minimum=minimum)


def escape_markdown(text: str) -> str:
    """User text shown literally inside Markdown: no HTML, no formatting.

    Quotes stay as they are: `&#x27;` would have its '#' escaped below and show as typed."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", html.escape(text, quote=False))


def chat_messages(conversation: list[dict[str, str]]) -> list[dict[str, str]]:
    """A conversation for a gr.Chatbot, which renders HTML: model and user text is shown as
    typed. System messages are not shown. A reply that names its `model` (the Playground's)
    carries that name as a label above its text."""
    shown = []
    for m in conversation:
        if m["role"] not in ("user", "assistant"):
            continue
        text = html.escape(m["content"])
        if m.get("model"):
            text = f'<span class="ft-reply-model">{html.escape(m["model"])}</span>\n{text}'
        shown.append({"role": m["role"], "content": text})
    return shown


def paced(
    updates: Iterator[T],
    interval: float = STREAM_INTERVAL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[T]:
    """Pass on the updates of a stream at most once per `interval` seconds, each one the latest
    state, and always the last state. Closing this generator (Stop, a closed page) closes the
    stream it reads, so whatever the stream saves when it ends is saved."""
    last_sent_at: float | None = None
    latest: T | None = None
    unsent = False
    try:
        for update in updates:
            now = clock()
            if last_sent_at is None or now - last_sent_at >= interval:
                last_sent_at, unsent = now, False
                yield update
            else:
                latest, unsent = update, True
        if unsent:
            yield latest  # type: ignore[misc]
    finally:
        close = getattr(updates, "close", None)
        if close is not None:
            close()


FROM_VERSION, FROM_FILE = "a dataset version's split", "an uploaded file"


def stop_button(streaming: bool) -> dict:
    """A Stop button as it should look: red and clickable only while a reply is coming."""
    return gr.update(interactive=streaming, variant="stop" if streaming else "secondary")


def wire_stop(stop: gr.Button, stopped: Callable[..., dict], events: list) -> None:
    """Stop cancels the streaming `events`, and goes off (`stopped`) once one has ended: not in
    its last yield, when Gradio still counts the event as running and drops a message sent at
    that moment (Enter pressed as soon as Stop went off)."""
    for event in events:
        event.then(stopped, None, [stop], api_name=False)
    stop.click(stopped, None, [stop], api_name=False, cancels=events)


def message_box(elem_id: str, label: str = "Message") -> gr.Textbox:
    """A chat's message box: Enter sends, Shift+Enter starts a new line (Gradio sends on Enter
    only from a box that starts one line high; it grows as lines are added)."""
    hint = "Ask something; Enter sends, Shift+Enter starts a new line"
    return gr.Textbox(label=label, lines=1, max_lines=8, elem_id=elem_id, placeholder=hint)


def prompt_source_fields(services: Services, what: str, file_label: str, elem_prefix: str) -> tuple:
    """The fields that say where a session's or a run's prompts come from: a frozen version's
    split, or an uploaded file; only the chosen source's fields show. Returns (source,
    version, split, file); `prompt_source` reads them."""
    source = gr.Radio([FROM_VERSION, FROM_FILE], value=FROM_VERSION, label=f"{what} from",
                      elem_id=f"{elem_prefix}-source")  # fmt: skip
    with gr.Row():
        version = gr.Dropdown(label="Dataset version", choices=[], allow_custom_value=True,
                              elem_id=f"{elem_prefix}-version")  # fmt: skip
        split = gr.Dropdown(["test", "validation", "train"], value="test", label="Split",
                            elem_id=f"{elem_prefix}-split")  # fmt: skip
        upload = gr.File(label=file_label, type="filepath", elem_id=f"{elem_prefix}-file",
                         file_types=[".jsonl", ".json", ".csv", ".parquet"],
                         visible=False)  # fmt: skip

    @guarded(services, Role.ADMIN)
    def show_source(request: gr.Request, where: str) -> tuple:
        from_file = where == FROM_FILE
        return (gr.update(visible=not from_file), gr.update(visible=not from_file),
                gr.update(visible=from_file))  # fmt: skip

    source.change(show_source, [source], [version, split, upload], api_name=False)
    return source, version, split, upload


def prompt_source(where: str, version_label: str | None, upload: str | None) -> dict[str, Any]:
    """The form's prompt source fields as the core takes them (`version` or `prompt_file`):
    a frozen version's split, or an uploaded file."""
    if where == FROM_FILE:
        upload = require(upload, "choose a file of prompts to upload")
        return {"version": None, "prompt_file": upload}
    return {"version": require(version_label, "choose a dataset version"), "prompt_file": None}
