"""Use cases of running commsync: `status`, `unlock`, the queue, tokens and the signing key,
health and the counts `/metrics` reports."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from commsync.api.context import Context
from commsync.auth import issue_token as issue_customer_token
from commsync.auth import parse_ttl
from commsync.errors import CommsyncError, NotFound, UsageError
from commsync.model import (
    BroadcastKind,
    BroadcastStatus,
    CustomerRecord,
    LiveBroadcast,
    LiveSystemEmail,
    QueuedBroadcast,
    QueuedItem,
    QueueState,
    SendProgress,
)
from commsync.store.failures import describe
from commsync.store.roles import BroadcastCancel, FailedRecipient, JournalEntry, LockHolder

if TYPE_CHECKING:
    from commsync.delivery.worker import WorkerHealth


@dataclass(frozen=True, slots=True)
class StatusReport:
    emails: tuple[LiveBroadcast, ...]
    notices: tuple[tuple[LiveBroadcast, int], ...]  # with dismissal counts
    system_emails: tuple[LiveSystemEmail, ...]
    applies: tuple[JournalEntry, ...]
    lock: LockHolder | None
    queue: QueueState = field(default_factory=QueueState)
    worker_seen_at: datetime | None = None  # the last sign of life of a delivery worker
    warnings: tuple[str, ...] = ()  # what needs the operator: missed sends, no worker

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
    emails = tuple(b for b in broadcasts if b.spec.kind == BroadcastKind.EMAIL)
    now = datetime.now(UTC)
    return StatusReport(
        emails=emails,
        notices=tuple((b, dismissals.get(b.id, 0)) for b in notices),
        system_emails=tuple(sorted(live.system_emails.values(), key=lambda e: e.slug)),
        applies=tuple(recent),
        lock=lock,
        queue=store.queue_state(now),
        worker_seen_at=live.worker_seen_at,
        warnings=_status_warnings(emails, live.worker_seen_at, now),
    )


def _status_warnings(
    emails: Sequence[LiveBroadcast], seen: datetime | None, now: datetime
) -> tuple[str, ...]:
    out = [
        f"email.{b.id} was missed: its send_at passed more than max_lateness ago before a "
        "delivery worker started it; it was never sent"
        for b in emails
        if b.status == BroadcastStatus.MISSED
    ]
    waiting = sum(1 for b in emails if b.status == BroadcastStatus.SCHEDULED)
    from commsync.plan.email_broadcasts import no_worker_message  # status only: start-up

    no_worker = no_worker_message(waiting, seen, now)
    return tuple(out if no_worker is None else [*out, no_worker])


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


class _TokenSource(Protocol):
    def customer(self, customer_id: str) -> CustomerRecord | None: ...

    def match_customers(self, refs: Collection[str]) -> Mapping[str, tuple[str, ...]]: ...


def _token_source(ctx: Context) -> tuple[_TokenSource, bytes]:
    """Where `token` reads: a SQLite store that has its signing key is read directly (no
    SQLAlchemy); any other store is opened (it makes the key on first use)."""
    light = ctx.light()
    key = light.signing_key() if light is not None else None
    if light is not None and key is not None:
        return light, key
    store = ctx.store()
    return store, store.signing_key()


def issue_token(ctx: Context, ref: str, ttl: str, *, by_id: bool = False) -> IssuedToken:
    """A token for one customer's notices feed and dismissals (`commsync token`: `ref` is an
    id, an email or a username; `by_id`: the platform's API names the customer by id only)."""
    lifetime = parse_ttl(ttl)
    source, key = _token_source(ctx)
    if by_id:
        record = source.customer(ref)
        if record is None:
            raise NotFound("no such customer")
        expires = datetime.now(UTC) + lifetime
        return IssuedToken(record, issue_customer_token(key, ref, expires), expires)
    found = source.match_customers([ref]).get(ref, ())
    if len(found) != 1:
        problem = (
            "matches several customers; use the email address" if found else "matches no customer"
        )
        raise CommsyncError(f"customer {ref!r} {problem}")
    customer = source.customer(found[0])
    assert customer is not None
    expires = datetime.now(UTC) + lifetime
    token = issue_customer_token(key, customer.id, expires)
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
    broadcasts: tuple[QueuedBroadcast, ...] = ()  # scheduled, or being sent


@dataclass(frozen=True, slots=True)
class Cancelled:
    """What `queue cancel` did: queued system-email messages cancelled, or (--broadcast) what
    the emergency brake did to one email broadcast."""

    messages: int = 0
    broadcast: BroadcastCancel | None = None


def queue(ctx: Context, limit: int) -> QueueListing:
    store = ctx.store()
    now = datetime.now(UTC)
    messages = tuple(store.queued_messages(limit))
    return QueueListing(store.queue_state(now), messages, now, tuple(store.queued_broadcasts()))


def _cancel_broadcast(ctx: Context, broadcast_id: str) -> Cancelled:
    done = ctx.store().cancel_broadcast(broadcast_id, datetime.now(UTC))
    if done is None:
        raise CommsyncError(
            f"no email broadcast has the id {broadcast_id!r}; nothing was cancelled"
        )
    if done.status not in ("scheduled", "sending"):
        raise CommsyncError(
            f"the email broadcast {broadcast_id} is {done.status}: there is nothing left to cancel"
        )
    return Cancelled(broadcast=done)


def cancel_queued(
    ctx: Context,
    ids: Sequence[int],
    email: str | None,
    event_key: str | None,
    broadcast: str | None = None,
) -> Cancelled:
    """Cancel what matches every criterion given; at least one must be. A broadcast is
    cancelled on its own (the emergency brake)."""
    if broadcast is not None:
        if ids or email is not None or event_key is not None:
            raise UsageError("--broadcast cancels one email broadcast; give it on its own")
        return _cancel_broadcast(ctx, broadcast)
    if not ids and email is None and event_key is None:
        raise UsageError(
            "say what to cancel: message ids, --email SLUG, --event KEY or --broadcast ID"
        )
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
    now = datetime.now(UTC)
    return Cancelled(store.cancel_queued(now, ids=ids, email=email, event_key=event_key))
