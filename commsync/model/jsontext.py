"""JSON from untrusted text, with a depth limit checked before parsing.

The standard library parses nested arrays recursively: a payload of 100,000 `[` ends in a
RecursionError deep inside it. Counting the nesting first is a linear scan and gives an error
that names the line and column.
"""

from __future__ import annotations

import json
import re

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
    try:
        value: JsonValue = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonTextError(f"not valid JSON: {exc.msg}", exc.lineno, exc.colno) from exc
    except ValueError as exc:  # a number beyond the digit limit of int()
        raise JsonTextError(f"not valid JSON: {exc}", 1, 1) from exc
    return value
