"""Use cases of running commsync: `status`, `unlock`, the queue, tokens and the signing key,
health and the counts `/metrics` reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from commsync.api.context import Context
from commsync.auth import issue_token as issue_customer_token
from commsync.auth import parse_ttl
from commsync.delivery.worker import WorkerHealth
from commsync.errors import CommsyncError, UsageError
from commsync.model import (
    BroadcastKind,
    CustomerRecord,
    LiveBroadcast,
    LiveSystemEmail,
    QueuedItem,
    QueueState,
    SendProgress,
)
from commsync.store.failures import describe
from commsync.store.roles import FailedRecipient, JournalEntry, LockHolder


@dataclass(frozen=True, slots=True)
class StatusReport:
    emails: tuple[LiveBroadcast, ...]
    notices: tuple[tuple[LiveBroadcast, int], ...]  # with dismissal counts
    system_emails: tuple[LiveSystemEmail, ...]
    applies: tuple[JournalEntry, ...]
    lock: LockHolder | None
    queue: QueueState = field(default_factory=QueueState)

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
        queue=store.queue_state(datetime.now(UTC)),
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


PROBE_TIMEOUT = 2.0  # seconds the store may take to accept a write before it counts as down


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    store: str = "ok"
    worker: str = "off"  # ok | failing | stalled | stopped | off (not running here)


def health(ctx: Context, worker: WorkerHealth | None) -> Health:
    """Whether the store takes a write and the delivery worker (if any) keeps up.

    A health check reports; it does not raise.
    """
    store = "ok"
    try:
        ctx.store().probe(PROBE_TIMEOUT)
    except Exception as exc:  # whatever the store does wrong is what this reports
        store = f"unavailable: {describe(exc)}"
    state = "off" if worker is None else _worker_state(worker)
    return Health(store == "ok" and state in ("ok", "off"), store, state)


def _worker_state(worker: WorkerHealth) -> str:
    now = datetime.now(UTC)
    if not worker.running:
        return "stopped"
    if worker.failing_since is not None:
        return f"failing since {worker.failing_since:%H:%M:%S}: {worker.last_error}"
    return "ok" if worker.healthy(now) else "stalled"


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    """Counts that matter across processes, read from the store when `/metrics` is scraped,
    and this process's delivery worker."""

    events_received: dict[str, int]
    sent: dict[str, int]  # by kind: broadcast, system_email
    failed: dict[str, int]
    queue: QueueState
    worker_up: bool | None = None  # None: no worker in this process
    worker_last_round: datetime | None = None
    worker_reconnects: int = 0


def delivery_counts(ctx: Context, worker: WorkerHealth | None) -> DeliveryCounts:
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
        queue=store.queue_state(datetime.now(UTC)),
        worker_up=None if worker is None else worker.healthy(datetime.now(UTC)),
        worker_last_round=None if worker is None else worker.last_round_at,
        worker_reconnects=0 if worker is None else worker.reconnects,
    )


@dataclass(frozen=True, slots=True)
class QueueListing:
    """`commsync queue`: the totals, and the soonest-due messages (at most `limit`)."""

    state: QueueState
    items: tuple[QueuedItem, ...]
    now: datetime


def queue(ctx: Context, limit: int) -> QueueListing:
    store = ctx.store()
    now = datetime.now(UTC)
    return QueueListing(store.queue_state(now), tuple(store.queued_messages(limit)), now)


def cancel_queued(
    ctx: Context, ids: Sequence[int], email: str | None, event_key: str | None
) -> int:
    """Cancel what matches every criterion given; at least one must be."""
    if not ids and email is None and event_key is None:
        raise UsageError("say what to cancel: message ids, --email SLUG or --event KEY")
    store = ctx.store()
    installed = store.system_emails()
    waiting = store.queue_state(datetime.now(UTC)).by_email if email is not None else {}
    if email is not None and email not in installed and email not in waiting:  # a typo, likely
        known = ", ".join(sorted(installed)) or "none"
        raise CommsyncError(
            f"unknown system email {email!r} (installed: {known}); nothing was cancelled"
        )
    if event_key is not None and store.event_for_key(event_key) is None:
        raise CommsyncError(f"no event has the key {event_key!r}; nothing was cancelled")
    return store.cancel_queued(datetime.now(UTC), ids=ids, email=email, event_key=event_key)
