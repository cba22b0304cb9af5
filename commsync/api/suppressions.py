"""Use cases: the suppression list (`commsync suppressions`).

Unsubscribes by link or one-click land here by themselves; the ones that arrive by mail (the
`mailto:` of List-Unsubscribe), bounces and complaints are recorded by operators, one address at a
time or a file of them — all or nothing, like the platform's data files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from commsync.api.context import Context
from commsync.api.platform import parse_file
from commsync.errors import CommsyncError, UsageError
from commsync.model import Suppression, SuppressionReason, SuppressionRecord, SuppressionScope
from commsync.model.mail import is_address
from commsync.repo.records import SUPPRESSIONS


@dataclass(frozen=True, slots=True)
class SuppressionList:
    total: int
    rows: tuple[Suppression, ...]  # the newest first


@dataclass(frozen=True, slots=True)
class Suppressed:
    """What `suppressions add|import` did."""

    added: int
    strengthened: int  # already suppressed for broadcasts; now for every email
    unchanged: int


def listing(ctx: Context, limit: int) -> SuppressionList:
    total, rows = ctx.store().suppressions(limit)
    return SuppressionList(total, tuple(rows))


def _record(ctx: Context, rows: Sequence[SuppressionRecord], source: str) -> Suppressed:
    added, stronger = ctx.store().add_suppressions(rows, source, datetime.now(UTC))
    distinct = len({r.email_key for r in rows})
    return Suppressed(added, stronger, distinct - added - stronger)


def add(
    ctx: Context, addresses: Sequence[str], reason: str, scope: str | None, source: str
) -> Suppressed:
    if not addresses:
        raise UsageError("give at least one address")
    bad = [a for a in addresses if not is_address(a)]
    if bad:
        shown = ", ".join(repr(a) for a in bad[:10])
        raise CommsyncError(f"not an email address: {shown}; nothing was recorded")
    why = SuppressionReason(reason)
    where = SuppressionScope(scope) if scope else None
    return _record(ctx, [SuppressionRecord(a, why, where) for a in addresses], source)


def import_file(ctx: Context, file: Path, display: str) -> Suppressed:
    rows = parse_file(file, display, SUPPRESSIONS, ctx.settings().limits)
    return _record(ctx, [r for _, r in rows], f"import {display}")


def remove(ctx: Context, addresses: Sequence[str]) -> int:
    if not addresses:
        raise UsageError("give at least one address")
    missing = ctx.store().remove_suppressions([a.lower() for a in addresses])
    if missing:
        raise CommsyncError(f"not suppressed: {', '.join(missing[:10])}; nothing was removed")
    return len({a.lower() for a in addresses})
