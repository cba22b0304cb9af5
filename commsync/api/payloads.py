"""Payloads given as text (a file, standard input) become JSON objects under the limits."""

from __future__ import annotations

from commsync.diagnostics import Diagnostic
from commsync.errors import ValidationFailed
from commsync.model import JsonObject
from commsync.model.jsontext import JsonTextError, PayloadText, parse_object
from commsync.model.limits import Limits

Payload = JsonObject | PayloadText


def payload_of(value: Payload, limits: Limits) -> JsonObject:
    """The payload as a JSON object; ValidationFailed naming the source and position."""
    if not isinstance(value, PayloadText):
        return value
    try:
        return parse_object(value, limits.payload_bytes, limits.json_depth)
    except JsonTextError as exc:
        problem = Diagnostic(value.source, exc.line, exc.col, exc.message)
        raise ValidationFailed([problem], "the payload was refused") from exc
