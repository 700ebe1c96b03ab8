"""What an event handler is sent, checked against its type hints before it runs.

Gradio publishes every event as an API endpoint, and a caller may send any JSON value for any
input: a dict sent for a name went down to SQLite, whose error came back to the caller.
`guarded` checks each argument against the handler's annotations and refuses a wrong one in
words that name the parameter. Only plain annotations are checked: str, int, float, bool,
list, dict, None, unions of them and `list[X]` of them. A parameter annotated otherwise
(gr.Request, gr.SelectData, Any) or not at all is left to the handler.

None passes every check: it is what the page sends for an empty field (no pick in a
dropdown, a cleared number, no file), and the handlers say what is missing in their own words.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from ftapp.errors import ValidationError

# The plain types, as a refusal names them.
NAMES: dict[type, str] = {
    str: "text",
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    list: "a list",
    dict: "an object",
    type(None): "nothing",
}
# An accepted type, with what its items must be (for list[X]; None: anything).
Kind = tuple[type, "tuple[Kind, ...] | None"]


def argument_checker(handler: Callable) -> Callable[[tuple, dict[str, Any]], None]:
    """A check(args, kwargs) for the calls of `handler` that raises ValidationError on the
    first argument its annotation refuses. Unreadable annotations fail here, when the page is
    built, not at the first call."""
    signature = inspect.signature(handler)
    try:
        hints = typing.get_type_hints(handler)
    except Exception as exc:
        raise TypeError(f"{handler.__qualname__}: can't read its type hints ({exc})") from exc
    named = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
             inspect.Parameter.KEYWORD_ONLY)  # fmt: skip
    expected = {
        name: kinds
        for name, parameter in signature.parameters.items()
        if parameter.kind in named and name in hints
        and (kinds := plain_kinds(hints[name])) is not None
    }  # fmt: skip

    def check(args: tuple, kwargs: dict[str, Any]) -> None:
        if not expected:
            return
        try:
            bound = signature.bind_partial(*args, **kwargs)
        except TypeError:
            return  # the call itself fails, and guarded reports it
        for name, kinds in expected.items():
            if name in bound.arguments:
                value = bound.arguments[name]
                if value is not None and not matches(value, kinds):
                    raise ValidationError(
                        f"{name}: expected {describe(kinds)}, got {describe_value(value, kinds)}"
                    )

    return check


def plain_kinds(annotation: Any) -> tuple[Kind, ...] | None:
    """The plain types an annotation allows, or None when it is anything else."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = [plain_kinds(arg) for arg in typing.get_args(annotation)]
        return None if None in parts else tuple(kind for part in parts for kind in part)
    if origin is list:
        args = typing.get_args(annotation)
        return ((list, plain_kinds(args[0]) if args else None),)
    if origin is dict:
        return ((dict, None),)
    if annotation in NAMES:
        return ((annotation, None),)
    return None


def matches(value: Any, kinds: tuple[Kind, ...]) -> bool:
    return any(
        _is_a(value, kind) and (items is None or all(matches(item, items) for item in value))
        for kind, items in kinds
    )


def _is_a(value: Any, kind: type) -> bool:
    # bool is an int to Python, but true is no answer to "how many"; a whole number is a number.
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)


def describe(kinds: tuple[Kind, ...]) -> str:
    names = []
    for kind, items in kinds:
        name = NAMES[kind]
        if items is not None:
            name += f" of {' or '.join(_plural(item) for item, _ in items)}"
        if name not in names:
            names.append(name)
    return " or ".join(names)


def describe_value(value: Any, kinds: tuple[Kind, ...]) -> str:
    """What was sent, in the words of NAMES; a list says which of its items is wrong."""
    item_kinds = next((items for kind, items in kinds if kind is list and items), None)
    if isinstance(value, list) and item_kinds:
        for item in value:
            if not matches(item, item_kinds):
                return f"a list with {describe_value(item, item_kinds)} in it"
    return NAMES.get(type(value), f"a {type(value).__name__}")


def _plural(kind: type) -> str:
    return {str: "text", bool: "true or false", int: "whole numbers", float: "numbers",
            list: "lists", dict: "objects", type(None): "nothing"}[kind]  # fmt: skip
