"""Templates compiled once into pieces: static text interleaved with placeholder slots.

A template that only substitutes `{{ name }}` placeholders is rendered (markdown, layout, CSS
inlining, sanitising) once with a sentinel token in place of each placeholder, then cut at the
tokens; each recipient then costs a few string joins.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping, Sequence

from commsync.render.sandbox import simple_placeholders

Pieces = tuple[str | int, ...]


def sentinels(names: Iterable[str]) -> dict[str, str]:
    """A token per placeholder name, unguessable so no template text can contain one."""
    salt = secrets.token_hex(6)
    return {name: f"zq{salt}x{i}qz" for i, name in enumerate(names)}


def tokenise(source: str, token: Mapping[str, str]) -> str:
    """`source` with each `{{ name }}` replaced by its token (for simple templates only)."""
    found = simple_placeholders(source) or []
    out, last = [], 0
    for name, offset in found:
        start = source.rfind("{{", 0, offset)
        end = source.index("}}", offset) + 2
        out.append(source[last:start] + token[name])
        last = end
    return "".join(out) + source[last:]


def split(text: str, slots: Mapping[str, int]) -> Pieces:
    """Cut text at sentinel tokens: static strings interleaved with slot indexes."""
    if not slots:
        return (text,)
    pattern = re.compile("|".join(map(re.escape, slots)))
    pieces: list[str | int] = []
    last = 0
    for match in pattern.finditer(text):
        pieces.append(text[last : match.start()])
        pieces.append(slots[match.group(0)])
        last = match.end()
    pieces.append(text[last:])
    return tuple(p for p in pieces if p != "")


def join(pieces: Sequence[str | int], values: Sequence[str]) -> str:
    return "".join(p if isinstance(p, str) else values[p] for p in pieces)
