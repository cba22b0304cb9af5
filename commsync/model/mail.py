"""Mail addresses: what counts as one mailbox, in files, imports, payloads and settings."""

from __future__ import annotations

import re
from email.utils import getaddresses

_ADDRESS = re.compile(r"[^@\s<>\"(),;:]+@[^@\s<>\"(),;:]+\.[^@\s<>\"(),;:]+")


def is_address(value: str) -> bool:
    """A plain mailbox address (no display name, no header-breaking characters)."""
    return bool(_ADDRESS.fullmatch(value)) and "\r" not in value and "\n" not in value


def parse_mailbox(value: str) -> tuple[str, str] | None:
    """`Name <addr>` or `addr` → (name, addr); None when it is not one mailbox."""
    if "\r" in value or "\n" in value:
        return None
    pairs = getaddresses([value])
    if len(pairs) != 1:
        return None
    name, addr = pairs[0]
    return (name, addr) if addr and is_address(addr) else None
