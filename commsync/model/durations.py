"""The one duration grammar: `0`, `90m`, `2h`, `3d`, `1d12h` (delays, token lifetimes)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"(?=\d)(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")


def parse_minutes(value: object) -> int | None:
    """Minutes of a duration written as 0, 90m, 2h, 3d or 1d12h; None when it is not one."""
    if value == 0 or value == "0":
        return 0
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    days, hours, minutes = (int(g) if g else 0 for g in match.groups())
    return days * 1440 + hours * 60 + minutes


def format_minutes(minutes: int) -> str:
    """The canonical spelling of a duration: 0, 1h30m, 3d, 1d12h."""
    if minutes == 0:
        return "0"
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (mins, "m")) if n)


def canonical(value: object) -> str | None:
    """The canonical spelling of a duration, or None when `value` is not one."""
    minutes = parse_minutes(value)
    return None if minutes is None else format_minutes(minutes)
