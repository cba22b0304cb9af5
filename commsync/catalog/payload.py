"""Checking an event's payload against its registered schema."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from commsync.model import EventDef, JsonValue, PayloadKey
from commsync.model.mail import is_address

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "id": (int, str),
}
MAX_ID = 255  # characters of a string id


def _type_name(value: JsonValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {int: "integer", float: "number", str: "string", list: "list", dict: "object"}.get(
        type(value), type(value).__name__
    )


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _format_problem(fmt: str | None, value: str) -> str | None:
    if fmt == "email" and not is_address(value):
        return "must be one email address"
    if fmt == "line" and _CONTROL.search(value):
        return "must be one line (no line breaks or control characters)"
    return None


def _described(type_name: str) -> str:
    return "an id (an integer or a string)" if type_name == "id" else type_name


def id_problem(value: object) -> str | None:
    """Why `value` is no id: ids are integers or one-line strings of 1 to MAX_ID characters."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return "must be an id (an integer or a string)"
    if isinstance(value, str) and (
        not value.strip() or len(value) > MAX_ID or _CONTROL.search(value)
    ):
        return f"must be an id: a one-line string of 1 to {MAX_ID} characters, or an integer"
    return None


def value_problem(key: PayloadKey, value: JsonValue) -> str | None:
    """Why `value` does not fit `key` (its type, and its format for strings), or None."""
    allowed = _TYPES[key.type]
    if not isinstance(value, allowed) or (key.type != "boolean" and isinstance(value, bool)):
        return f"must be {_described(key.type)}, got {_type_name(value)}"
    if key.type == "id":
        return id_problem(value)
    if isinstance(value, str):
        return _format_problem(key.format, value)
    return None


def payload_problems(
    event: EventDef, payload: Mapping[str, JsonValue], required: Iterable[str]
) -> list[str]:
    """Each problem names the key: a mistyped value, or a value an active email needs but lacks.

    Keys the event does not declare are accepted and ignored (platforms send more than emails use).
    """
    problems = []
    declared = {k.name: k for k in event.keys}
    for name, value in sorted(payload.items()):
        key = declared.get(name)
        if key is None or value is None:
            continue
        if problem := value_problem(key, value):
            problems.append(f"{name} {problem}")
    for name in sorted(set(required)):
        if payload.get(name) is None:
            problems.append(f"{name} is missing, and an active email of {event.slug} uses it")
    return problems
