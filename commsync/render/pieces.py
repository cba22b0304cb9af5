"""Templates compiled once into pieces: static text interleaved with placeholder slots.

A template that only substitutes `{{ name }}` placeholders is rendered (markdown, layout, CSS
inlining, sanitising) once with a sentinel token in place of each placeholder, then cut at the
tokens; each recipient then costs a few string joins.
"""

from __future__ import annotations

import binascii
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


def bake(pieces: Sequence[str | int], fixed: Mapping[int, str]) -> Pieces:
    """The slots in `fixed` (the same for every message) filled in once; the others remain."""
    out: list[str | int] = []
    for piece in pieces:
        if isinstance(piece, int) and piece in fixed:
            piece = fixed[piece]
        if isinstance(piece, str) and out and isinstance(out[-1], str):
            out[-1] += piece
        else:
            out.append(piece)
    return tuple(p for p in out if p != "")


def join(pieces: Sequence[str | int], values: Sequence[str]) -> str:
    return "".join(p if isinstance(p, str) else values[p] for p in pieces)


_LINE = 57  # bytes of input per 76-character line of base64
# Encoded lines kept per message skeleton, at most: a 20 KB HTML part needs ~1.5 MB for every
# line phase; a larger one keeps some phases and encodes the others per message. Factories are
# kept per send (a worker keeps up to 100), so this bounds their memory too.
_CACHE_BYTES = 2 * 2**20


def base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character lines joined by CRLF, as MIME wants it."""
    encoded = binascii.b2a_base64(data, newline=False)
    return b"\r\n".join([encoded[i : i + 76] for i in range(0, len(encoded), 76)])


class Base64Pieces:
    """`base64_lines` of pieces joined with each message's values, without encoding the static
    pieces again for every message.

    A line of base64 is 57 bytes of input, so a static piece's whole lines depend only on where
    the current line stands when the piece starts (57 ways): those lines are encoded once for
    each way met (up to `_CACHE_BYTES` in all), and each message encodes only the lines that
    hold a value or straddle a piece's edge. The result is byte for byte `base64_lines` of the
    joined text (a property test compares them).
    """

    def __init__(self, pieces: Sequence[str | int]) -> None:
        self.parts = tuple(p.encode("utf-8") if isinstance(p, str) else p for p in pieces)
        self.cache: dict[tuple[int, int], tuple[bytes, bytes]] = {}
        self.cached = 0

    def _whole_lines(self, i: int, part: bytes, need: int) -> tuple[bytes, bytes]:
        """The piece's lines after its first `need` bytes, encoded, and the bytes left over."""
        found = self.cache.get((i, need))
        if found is None:
            whole = (len(part) - need) // _LINE * _LINE
            found = base64_lines(part[need : need + whole]), part[need + whole :]
            if self.cached + len(found[0]) <= _CACHE_BYTES:
                self.cache[(i, need)] = found
                self.cached += len(found[0])
        return found

    def encode(self, values: Sequence[bytes]) -> bytes:
        out: list[bytes] = []
        carry = b""  # input of the line being filled (fewer than _LINE bytes between pieces)
        for i, part in enumerate(self.parts):
            if isinstance(part, int):
                carry += values[part]
            else:
                need = (_LINE - len(carry)) % _LINE
                if len(part) < need + _LINE:
                    carry += part
                else:
                    if carry:
                        out.append(base64_lines(carry + part[:need]))
                    lines, carry = self._whole_lines(i, part, need)
                    out.append(lines)
                    continue
            if len(carry) >= _LINE:
                whole = len(carry) // _LINE * _LINE
                out.append(base64_lines(carry[:whole]))
                carry = carry[whole:]
        if carry:
            out.append(base64_lines(carry))
        return b"\r\n".join(out)


def quoted_printable(text: str) -> bytes:
    """Quoted-printable with CRLF line ends: the text part stays readable in the raw message."""
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False).replace(b"\n", b"\r\n")


class QuotedPrintablePieces:
    """`quoted_printable` of pieces joined with each message's values, with the lines that hold
    no value encoded once.

    Quoted-printable encodes each line on its own (soft breaks stay inside a line), so the
    encoding of the joined text is the encodings of its lines one after the other: lines of
    static text only are encoded here, once; each message encodes the lines its values are in,
    each from the static line break before to the one after (so a carriage return, which the
    encoding turns into a line break or joins to the one after it, stays inside what is
    encoded together). The result is byte for byte `quoted_printable` of the joined text (a
    property test compares them).
    """

    def __init__(self, pieces: Sequence[str | int]) -> None:
        self.parts: list[bytes | tuple[str | int, ...]] = []
        line: list[str | int] = []
        constant: list[str] = []  # lines of static text only, not yet encoded

        def close() -> None:
            nonlocal line
            if any(isinstance(p, int) for p in line):
                if constant:
                    self.parts.append(quoted_printable("".join(constant)))
                    constant.clear()
                self.parts.append(tuple(line))
            else:
                constant.extend(p for p in line if isinstance(p, str))
            line = []

        for piece in pieces:
            if isinstance(piece, int):
                line.append(piece)
                continue
            *ended, rest = piece.split("\n")
            for text in ended:
                line.append(text + "\n")
                close()
            if rest:
                line.append(rest)
        close()
        if constant:
            self.parts.append(quoted_printable("".join(constant)))

    def encode(self, values: Sequence[str]) -> bytes:
        return b"".join(
            p if isinstance(p, bytes) else quoted_printable(join(p, values)) for p in self.parts
        )
