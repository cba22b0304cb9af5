"""Use cases of running commsync: `status`, `unlock`, tokens and the signing key, health and the
counts `/metrics` reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from commsync.api.context import Context
from commsync.auth import issue_token as issue_customer_token
from commsync.auth import parse_ttl
from commsync.errors import CommsyncError
from commsync.model import (
    BroadcastKind,
    CustomerRecord,
    LiveBroadcast,
    LiveSystemEmail,
    SendProgress,
)
from commsync.store.roles import FailedRecipient, JournalEntry, LockHolder


@dataclass(frozen=True, slots=True)
class StatusReport:
    emails: tuple[LiveBroadcast, ...]
    notices: tuple[tuple[LiveBroadcast, int], ...]  # with dismissal counts
    system_emails: tuple[LiveSystemEmail, ...]
    applies: tuple[JournalEntry, ...]
    lock: LockHolder | None

    def progress(self, email: LiveBroadcast) -> SendProgress:
        return email.progress or SendProgress()


def status(ctx: Context, applies: int = 10) -> StatusReport:
    store = ctx.store()
    live = store.snapshot()
    dismissals = store.dismissal_counts()
    recent = store.recent_applies(applies)
    lock = store.current_lock()
    broadcasts = sorted(live.broadcasts.values(), key=lambda b: b.id)
    notices = [b for b in broadcasts if b.spec.kind == BroadcastKind.NOTICE]
    return StatusReport(
        emails=tuple(b for b in broadcasts if b.spec.kind == BroadcastKind.EMAIL),
        notices=tuple((b, dismissals.get(b.id, 0)) for b in notices),
        system_emails=tuple(sorted(live.system_emails.values(), key=lambda e: e.slug)),
        applies=tuple(recent),
        lock=lock,
    )


def failed_recipients(ctx: Context, broadcast_id: str) -> list[FailedRecipient]:
    store = ctx.store()
    if store.send_id_for(broadcast_id) is None:
        raise CommsyncError(f"no email broadcast {broadcast_id!r} has been sent from this store")
    return store.failed_recipients(broadcast_id)


def unlock(ctx: Context, lock_id: str) -> LockHolder:
    store = ctx.store()
    removed = store.unlock(lock_id)
    if removed is None:
        current = store.current_lock()
        held = f"the lock is held by {current.describe()}" if current else "nobody holds the lock"
        raise CommsyncError(f"no lock {lock_id!r}: {held}")
    return removed


@dataclass(frozen=True, slots=True)
class IssuedToken:
    customer: CustomerRecord
    token: str
    expires: datetime


def issue_token(ctx: Context, ref: str, ttl: str) -> IssuedToken:
    """A token for one customer's notices feed and dismissals (`commsync token`)."""
    lifetime = parse_ttl(ttl)
    store = ctx.store()
    found = store.match_customers([ref]).get(ref, ())
    if len(found) != 1:
        problem = (
            "matches several customers; use the email address" if found else "matches no customer"
        )
        raise CommsyncError(f"customer {ref!r} {problem}")
    customer = store.customer(found[0])
    assert customer is not None
    expires = datetime.now(UTC) + lifetime
    token = issue_customer_token(store.signing_key(), customer.id, expires)
    return IssuedToken(customer, token, expires)


def rotate_key(ctx: Context) -> None:
    """`commsync rotate-key`: every customer token issued so far stops working."""
    ctx.store().rotate_signing_key()


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str = ""


def health(ctx: Context) -> Health:
    """Whether the store answers (a health check reports; it does not raise)."""
    try:
        ctx.store().product_slugs()
    except Exception as exc:
        return Health(False, str(exc)[:200])
    return Health(True)


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    """Counts that matter across processes, read from the store when `/metrics` is scraped."""

    events_received: dict[str, int]
    sent: dict[str, int]  # by kind: broadcast, system_email
    failed: dict[str, int]
    queue_depth: int


def delivery_counts(ctx: Context) -> DeliveryCounts:
    store = ctx.store()
    broadcasts = [
        b.progress for b in store.snapshot().broadcasts.values() if b.progress is not None
    ]
    system = store.system_emails().values()
    return DeliveryCounts(
        events_received=store.events_received(),
        sent={
            "broadcast": sum(p.sent for p in broadcasts),
            "system_email": sum(e.stats.sent for e in system),
        },
        failed={
            "broadcast": sum(p.failed for p in broadcasts),
            "system_email": sum(e.stats.failed for e in system),
        },
        queue_depth=store.queue_depth(datetime.now(UTC)),
    )
