"""Quick readers for the plain lines of a large CSV import: the common case, without the csv
module, a dict per row or a call per field.

A nightly export of a million customers and 1.5 million memberships is almost all plain lines:
no quotes, no stray spaces, values within their patterns. For a file's header, `membership_line`
and `customer_line` return a function that reads one such line straight into its record, and
returns None for any other line — which the general reader (repo/records.py) then reads and
checks as always, so a quick reader decides nothing the general one would decide otherwise:
a line it accepts gives the same record, and every refusal, with its message, comes from the
general reader. (Reading and checking the rows was a quarter of a memberships import.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from commsync.model import CustomerRecord, MembershipRecord
from commsync.model.mail import is_address

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")
SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
STATUS = re.compile(r"[a-z][a-z0-9_-]{0,31}")
TEXT_LIMIT = 255  # characters of a free-text field (both readers use these)
LIMITS = {"email": 320, "locale": 35}

LineReader = Callable[[str], object]


def membership_line(header: Sequence[str]) -> Callable[[str], MembershipRecord | None] | None:
    """A reader of plain membership lines under `header` (its three columns in any order)."""
    fields = {"customer_id": ID, "product": SLUG, "status": STATUS}
    if sorted(header) != sorted(fields):
        return None
    line = re.compile(
        ",".join(f"({fields[name].pattern})" for name in header) + r"\r?\n?", re.ASCII
    )
    at = [header.index(name) for name in ("customer_id", "product", "status")]
    match = line.fullmatch

    def read(text: str) -> MembershipRecord | None:
        found = match(text)
        if found is None:
            return None
        values = found.groups()
        return MembershipRecord(values[at[0]], values[at[1]], values[at[2]])

    return read


def customer_line(header: Sequence[str]) -> Callable[[str], CustomerRecord | None] | None:
    """A reader of plain customer lines under `header` (no quote, no line break inside)."""
    names = ("id", "email", "username", "first_name", "last_name", "display_name", "locale")
    if len(set(header)) != len(header) or not {"id", "email"} <= set(header) <= set(names):
        return None
    width = len(header)
    at = {name: header.index(name) if name in header else -1 for name in names}
    i_id, i_email = at["id"], at["email"]
    optional = [(at[name], LIMITS.get(name, TEXT_LIMIT)) for name in names[2:]]
    id_match, email_limit = ID.fullmatch, LIMITS["email"]

    def read(text: str) -> CustomerRecord | None:
        if '"' in text or "\r" in text.rstrip("\r\n") or "\x00" in text:
            return None
        values = text.rstrip("\r\n").split(",")
        if len(values) != width:
            return None
        ident = values[i_id].strip()
        email = values[i_email].strip()
        if id_match(ident) is None or len(email) > email_limit or not is_address(email):
            return None
        rest: list[str | None] = []
        for i, limit in optional:
            value = values[i].strip() if i >= 0 else ""
            if len(value) > limit:
                return None
            rest.append(value or None)
        return CustomerRecord(ident, email, *rest)

    return read
