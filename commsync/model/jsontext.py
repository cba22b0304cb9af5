"""JSON from untrusted text, with a depth limit checked before parsing.

The standard library parses nested arrays recursively: a payload of 100,000 `[` ends in a
RecursionError deep inside it. Counting the nesting first is a linear scan and gives an error
that names the line and column.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from commsync.model.values import JsonValue

_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class JsonTextError(ValueError):
    """Not JSON, or nested too deeply; `line` and `col` point at the problem (1-based)."""

    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(message)
        self.message, self.line, self.col = message, line, col


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def loads(text: str, max_depth: int) -> JsonValue:
    """The JSON value of `text`; JsonTextError for invalid JSON or nesting past `max_depth`."""
    check_depth(text, max_depth)
    try:
        value: JsonValue = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonTextError(f"not valid JSON: {exc.msg}", exc.lineno, exc.colno) from exc
    except ValueError as exc:  # a number beyond the digit limit of int()
        raise JsonTextError(f"not valid JSON: {exc}", 1, 1) from exc
    return value


def check_depth(text: str, max_depth: int) -> None:
    """JsonTextError when the arrays and objects of `text` nest deeper than `max_depth`."""
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group(0)
        if token in "[{":
            depth += 1
            if depth > max_depth:
                line, col = _position(text, match.start())
                message = f"nested deeper than {max_depth} levels (limits.json_depth)"
                raise JsonTextError(message, line, col)
        elif token in "]}":
            depth -= 1


@dataclass(frozen=True, slots=True)
class PayloadText:
    """A payload as given (a file or standard input), parsed by the service under its limits."""

    source: str  # how to name it in a diagnostic: the file, or <stdin>
    data: bytes


MAX_READ = 16 * 1024 * 1024  # the most any payload limit allows; more is never read


def parse_object(text: PayloadText, max_bytes: int, max_depth: int) -> dict[str, JsonValue]:
    """The JSON object `text` holds; JsonTextError for anything else (the position included)."""
    if len(text.data) > max_bytes:
        message = (
            f"the payload is {len(text.data):,} bytes or more, more than the limit of "
            f"{max_bytes:,} (limits.payload_bytes)"
        )
        raise JsonTextError(message, 1, 1)
    try:
        decoded = text.data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JsonTextError("not UTF-8 text", 1, 1) from exc
    value = loads(decoded, max_depth)
    if not isinstance(value, dict):
        raise JsonTextError("the payload must be a JSON object of the event's keys", 1, 1)
    return value
