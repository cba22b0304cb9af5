"""Checking an event's payload against its registered schema."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from commsync.model import EventDef, JsonValue

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _type_name(value: JsonValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {int: "integer", float: "number", str: "string", list: "list", dict: "object"}.get(
        type(value), type(value).__name__
    )


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
        allowed = _TYPES[key.type]
        if not isinstance(value, allowed) or (key.type != "boolean" and isinstance(value, bool)):
            problems.append(f"{name} must be {key.type}, got {_type_name(value)}")
    for name in sorted(set(required)):
        if payload.get(name) is None:
            problems.append(f"{name} is missing, and an active email of {event.slug} uses it")
    return problems
