"""The per-handler guard without a browser: the role first, then each argument against the
handler's type hints (an API caller may send any JSON value), core errors shown in words, and
any other failure logged with its traceback but answered with a sentence of no detail."""

from __future__ import annotations

import json
import logging
import sqlite3

import gradio as gr
import pytest

from ftapp.auth import add_user
from ftapp.errors import NotFound
from ftapp.records import Role
from ftapp.store.datasets import create_dataset
from ftapp.ui.common import SERVER_ERROR, guarded

ADMIN = gr.Request()  # no users in the database: single-user mode, everyone is the admin


def refusal(call) -> str:
    with pytest.raises(gr.Error) as raised:
        call()
    return raised.value.message


@pytest.fixture
def seen(services):
    """A handler for each kind of parameter, recording what it was called with."""
    calls: list[tuple] = []

    @guarded(services, Role.ADMIN)
    def handler(request: gr.Request, name: str, current: str | None, count: int,
                ratio: float, on: bool, names: list[str], options: dict, evt: gr.SelectData,
                anything=None) -> str:  # fmt: skip
        calls.append((name, current, count, ratio, on, names, options, anything))
        return "ok"

    return handler, calls


GOOD = {"name": "support", "current": None, "count": 3, "ratio": 0.5, "on": True,
        "names": ["a", "b"], "options": {"k": 1}, "evt": None}  # fmt: skip


def call(handler, **changes):
    values = {**GOOD, **changes}
    return handler(ADMIN, *values.values())


def test_a_dict_sent_for_text_is_refused_with_the_parameters_name(seen):
    handler, calls = seen
    message = refusal(lambda: call(handler, name={"$gt": ""}))
    assert message == "name: expected text, got an object"
    assert calls == []  # refused before the handler ran


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"current": ["x"]}, "current: expected text or nothing, got a list"),
        ({"count": "3"}, "count: expected a whole number, got text"),
        ({"count": True}, "count: expected a whole number, got true or false"),
        ({"count": 2.5}, "count: expected a whole number, got a number"),
        ({"ratio": "half"}, "ratio: expected a number, got text"),
        ({"on": 1}, "on: expected true or false, got a whole number"),
        ({"names": "a"}, "names: expected a list of text, got text"),
        ({"names": ["a", {"b": 1}]},
         "names: expected a list of text, got a list with an object in it"),
        ({"options": []}, "options: expected an object, got a list"),
    ],
)  # fmt: skip
def test_each_plain_type_refuses_what_it_is_not(seen, changes, expected):
    handler, calls = seen
    assert refusal(lambda: call(handler, **changes)) == expected
    assert calls == []


def test_valid_values_pass(seen):
    handler, calls = seen
    assert call(handler) == "ok"
    # A whole number is a number; a parameter without a plain annotation takes anything.
    assert call(handler, ratio=2, current="x", names=[], anything={"free": "form"}) == "ok"
    assert calls[-1] == ("support", "x", 3, 2, True, [], {"k": 1}, {"free": "form"})


def test_none_passes_for_optional_parameters_and_empty_fields(seen):
    handler, calls = seen
    assert call(handler, current=None) == "ok"
    # An empty field sends None whatever the annotation; the handler says what is missing.
    assert call(handler, name=None, count=None, names=None) == "ok"
    assert len(calls) == 2


def test_the_role_is_checked_before_the_arguments(services):
    with services.db() as db:
        add_user(db, "rita", "reviewer", "rita-secret-1", "test")

    @guarded(services, Role.ADMIN)
    def admin_only(request: gr.Request, name: str) -> str:
        return "ran"

    message = refusal(lambda: admin_only(gr.Request(username="rita"), {"not": "text"}))
    assert message == "rita is a reviewer; this needs an admin"


def test_a_generator_handler_is_checked_before_its_first_item(services):
    @guarded(services, Role.ADMIN)
    def stream(request: gr.Request, text: str):
        yield "started"

    assert list(stream(ADMIN, "hello")) == ["started"]
    assert refusal(lambda: list(stream(ADMIN, 42))) == "text: expected text, got a whole number"


def test_an_unexpected_error_is_logged_but_its_text_is_not_sent(services, caplog):
    @guarded(services, Role.ADMIN)
    def broken(request: gr.Request, name: str) -> str:
        raise sqlite3.InterfaceError("Error binding parameter 1: type 'dict' is not supported")

    @guarded(services, Role.ADMIN)
    def broken_stream(request: gr.Request):
        yield "partial"
        raise KeyError("/home/ftapp/secret/path")

    with caplog.at_level(logging.ERROR, logger="ftapp.ui.common"):
        assert refusal(lambda: broken(ADMIN, "x")) == SERVER_ERROR
        assert refusal(lambda: list(broken_stream(ADMIN))) == SERVER_ERROR
    assert "binding parameter" not in SERVER_ERROR and "secret" not in SERVER_ERROR
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 2
    assert "broken" in logged[0].getMessage()
    assert "Error binding parameter 1" in caplog.text and "/home/ftapp/secret/path" in caplog.text


def test_core_errors_and_the_handlers_own_messages_still_read_as_written(services):
    @guarded(services, Role.ADMIN)
    def missing(request: gr.Request, name: str) -> str:
        raise NotFound(f"no dataset named {name!r}")

    @guarded(services, Role.ADMIN)
    def told(request: gr.Request) -> str:
        raise gr.Error("No example selected.")

    assert refusal(lambda: missing(ADMIN, "<b>x</b>")) == "no dataset named '&lt;b&gt;x&lt;/b&gt;'"
    assert refusal(lambda: told(ADMIN)) == "No example selected."


def test_unreadable_annotations_fail_when_the_page_is_built(services):
    def handler(request: gr.Request, name: NoSuchType) -> str:  # noqa: F821
        return name

    with pytest.raises(TypeError, match="can't read its type hints"):
        guarded(services, Role.ADMIN)(handler)


def test_the_built_page_names_no_dataset_and_checks_every_handler(services):
    """Every handler of the real page has readable hints (building it checks them), and the
    page as built (what /config and /gradio_api/info show to any signed-in user) names none of
    the datasets: the admins' page fills its choices when it loads."""
    from ftapp.ui.app import build_app

    with services.db() as db:
        create_dataset(db, "secretdata", "test")
    app = build_app(services)
    assert "secretdata" not in json.dumps(app.get_config_file(), default=repr)
    assert "secretdata" not in json.dumps(app.get_api_info(), default=repr)
    # Single-user mode (no users here): the one user is the admin, and the page load fills it.
    fill = next(f for f in app.fns.values() if getattr(f.fn, "__name__", "") == "load_names")
    gate = app.fns[fill.trigger_after]
    gate.fn(ADMIN)  # the admin passes the gate: no error
    shown = fill.fn(ADMIN, None)  # nothing remembered by this browser: the newest is opened
    assert shown["choices"] == ["secretdata"] and shown["value"] == "secretdata"
    assert fill.fn(ADMIN, "gone")["value"] == "secretdata"  # a remembered name must exist


def test_every_call_is_timed_by_action_refused_ones_too(services):
    from ftapp.ui.handler_times import HandlerTimes

    @guarded(services, Role.ADMIN)
    def slow_action(request: gr.Request, seconds: float) -> str:
        import time

        time.sleep(seconds)
        return "done"

    from ftapp.ui import common

    times = HandlerTimes()
    original, common.HANDLER_TIMES = common.HANDLER_TIMES, times
    try:
        for _ in range(3):
            slow_action(ADMIN, 0.05)
        refusal(lambda: slow_action(ADMIN, "soon"))  # refused: still a call the server took
    finally:
        common.HANDLER_TIMES = original
    [row] = times.summary(window_seconds=60)
    assert row.handler == "test_guarded.slow_action" and row.calls == 4
    assert 50 <= row.p95_ms < 5_000 and row.p50_ms >= 50
    assert 0 < row.busy_share < 1
    assert times.summary(window_seconds=1e-9) == []  # nothing ended that recently
