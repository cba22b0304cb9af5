"""Use cases: `status` (what is live and how sends went), `status --failed`, `unlock`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from commsync.api.core import Project, load_settings, store_session
from commsync.auth import issue_token as issue_customer_token
from commsync.errors import CommsyncError
from commsync.model import CustomerRecord, LiveBroadcast, LiveSystemEmail, SendProgress
from commsync.store.base import FailedRecipient, JournalEntry, LockHolder


@dataclass(frozen=True, slots=True)
class StatusReport:
    emails: tuple[LiveBroadcast, ...]
    notices: tuple[tuple[LiveBroadcast, int], ...]  # with dismissal counts
    system_emails: tuple[LiveSystemEmail, ...]
    applies: tuple[JournalEntry, ...]
    lock: LockHolder | None

    def progress(self, email: LiveBroadcast) -> SendProgress:
        return email.progress or SendProgress()


def status(project: Project, applies: int = 10) -> StatusReport:
    settings = load_settings(project)
    with store_session(settings.store_url) as store:
        live = store.snapshot()
        dismissals = store.dismissal_counts()
        recent = store.recent_applies(applies)
        lock = store.current_lock()
    broadcasts = sorted(live.broadcasts.values(), key=lambda b: b.id)
    return StatusReport(
        emails=tuple(b for b in broadcasts if b.spec.kind == "email"),
        notices=tuple((b, dismissals.get(b.id, 0)) for b in broadcasts if b.spec.kind == "notice"),
        system_emails=tuple(sorted(live.system_emails.values(), key=lambda e: e.slug)),
        applies=tuple(recent),
        lock=lock,
    )


def failed_recipients(project: Project, broadcast_id: str) -> list[FailedRecipient]:
    settings = load_settings(project)
    with store_session(settings.store_url) as store:
        if store.send_id_for(broadcast_id) is None:
            raise CommsyncError(
                f"no email broadcast {broadcast_id!r} has been sent from this store"
            )
        return store.failed_recipients(broadcast_id)


def unlock(project: Project, lock_id: str) -> LockHolder:
    settings = load_settings(project)
    with store_session(settings.store_url) as store:
        removed = store.unlock(lock_id)
        if removed is None:
            current = store.current_lock()
            held = (
                f"the lock is held by {current.describe()}" if current else "nobody holds the lock"
            )
            raise CommsyncError(f"no lock {lock_id!r}: {held}")
        return removed


def issue_token(project: Project, ref: str, ttl: timedelta) -> tuple[CustomerRecord, str, datetime]:
    """A token for one customer's notices feed and dismissals (`commsync token`)."""
    settings = load_settings(project)
    with store_session(settings.store_url) as store:
        found = store.match_customers([ref]).get(ref, ())
        if len(found) != 1:
            problem = (
                "matches several customers; use the email address"
                if found
                else "matches no customer"
            )
            raise CommsyncError(f"customer {ref!r} {problem}")
        customer = store.customer(found[0])
        assert customer is not None
        expires = datetime.now(UTC) + ttl
        return customer, issue_customer_token(store.signing_key(), customer.id, expires), expires


def rotate_key(project: Project) -> None:
    """`commsync rotate-key`: every customer token issued so far stops working."""
    settings = load_settings(project)
    with store_session(settings.store_url) as store:
        store.rotate_signing_key()
