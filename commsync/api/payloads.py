"""Payloads become JSON objects under the limits: text (a file, standard input) is measured and
parsed here; an object (an HTTP body, parsed by the server within its own limits) is measured."""

from __future__ import annotations

import json

from commsync.diagnostics import Diagnostic
from commsync.errors import InvalidInput, ValidationFailed
from commsync.model import JsonObject
from commsync.model.jsontext import JsonTextError, PayloadText, parse_object
from commsync.model.limits import Limits

Payload = JsonObject | PayloadText


def payload_of(value: Payload, limits: Limits) -> JsonObject:
    """The payload as a JSON object; ValidationFailed naming the source and position (text),
    InvalidInput (an object larger than `limits.payload_bytes` once written as JSON)."""
    if not isinstance(value, PayloadText):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > limits.payload_bytes:
            raise InvalidInput(
                [
                    f"the payload is {size:,} bytes, more than the limit of "
                    f"{limits.payload_bytes:,} (limits.payload_bytes)"
                ]
            )
        return value
    try:
        return parse_object(value, limits.payload_bytes, limits.json_depth)
    except JsonTextError as exc:
        problem = Diagnostic(value.source, exc.line, exc.col, exc.message)
        raise ValidationFailed([problem], "the payload was refused") from exc
