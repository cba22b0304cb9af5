"""Header values of a message: the guard every value passes, and their encodings (RFC 2047
encoded-words for what is not plain ASCII, display names quoted as formataddr would)."""

from __future__ import annotations

import base64
import re
from email.utils import formataddr

# Line breaks and other control characters (tab aside) never reach a header: they would end it.
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# What makes formataddr quote a display name (RFC 5322 specials).
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')
# A subject written as it is: printable ASCII, no edge spaces, nothing a reader would decode.
_PLAIN = re.compile(r"[!-~](?:[ -~]{0,897}[!-~])?")


class RenderError(Exception):
    """This recipient's message cannot be built (the send records it as failed, with this reason)."""


def encoded_words(text: str) -> str:
    """RFC 2047 base64 encoded-words (≤ 75 characters each, split between characters), folded."""
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > 45:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(ch)
        size += n
    words.append("".join(chunk))
    encoded = (base64.b64encode(w.encode("utf-8")).decode("ascii") for w in words if w)
    return "\r\n ".join(f"=?utf-8?b?{e}?=" for e in encoded)


def header_value(value: str, what: str) -> str:
    """The one guard of every header value: a line break would let it add headers."""
    if CONTROL.search(value):
        raise RenderError(f"{what} contains a line break or a control character")
    return value


def subject_header(subject: str) -> str:
    if _PLAIN.fullmatch(subject) and "=?" not in subject:
        return subject
    return encoded_words(subject)


def mailbox(name: str, address: str) -> str:
    """`Name <address>`; a name a reader would decode, or too long for one line, is encoded.
    Space around the name is no part of it (readers drop it)."""
    name = name.strip(" \t")
    if not name:
        return address
    if name.isascii() and "=?" not in name and len(name) <= 78:
        if not _SPECIALS.search(name):  # what formataddr would write, without its checks
            return f"{name} <{address}>"
        return formataddr((name, address))
    return f"{encoded_words(name)} <{address}>"
