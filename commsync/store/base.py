"""The Store protocol: what the use cases need from the live store, whatever the database."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from commsync.model import (
    Audience,
    BroadcastSpec,
    CustomerRecord,
    ImportCounts,
    JsonObject,
    LiveBroadcast,
    LiveSnapshot,
    LiveSystemEmail,
    MembershipRecord,
    ProductRecord,
    Targets,
)

if TYPE_CHECKING:
    from commsync.store.events import QueuedEmail, RecordedEvent
    from commsync.store.ledger import SqlLedger


class Store(Protocol):
    """The live store. One contract test suite runs against every implementation."""

    @property
    def store_id(self) -> str:
        """A random id fixed when the store was created; plans name the store they were made for."""
        ...

    @property
    def display_url(self) -> str:
        """The store URL with any password hidden."""
        ...

    def product_slugs(self) -> frozenset[str]: ...

    def match_customers(self, refs: Collection[str]) -> Mapping[str, tuple[str, ...]]:
        """For each ref, the ids of customers whose id, email (any case) or username it equals."""
        ...

    def existing_customer_ids(self, ids: Collection[str]) -> frozenset[str]: ...

    def snapshot(self) -> LiveSnapshot:
        """Managed broadcasts and installed system emails, with progress and stats."""
        ...

    def count_audiences(
        self, targets: Collection[Targets], statuses: Sequence[str]
    ) -> Mapping[Targets, Audience]:
        """Distinct customers each target selection reaches, counted in SQL."""
        ...

    def upsert_customers(self, rows: Sequence[CustomerRecord]) -> ImportCounts: ...

    def upsert_products(self, rows: Sequence[ProductRecord]) -> ImportCounts: ...

    def upsert_memberships(self, rows: Sequence[MembershipRecord]) -> ImportCounts: ...

    def put_broadcast(self, live: LiveBroadcast) -> None:
        """Create or replace a managed broadcast (spec, status, provenance, targets)."""
        ...

    def put_system_email(self, live: LiveSystemEmail) -> None:
        """Create or replace an installed system email; its stats are kept."""
        ...

    def delete_system_email(self, slug: str) -> None: ...

    def close(self) -> None: ...

    # -- apply: lock and journal ------------------------------------------------------------

    def current_lock(self) -> LockHolder | None: ...

    def acquire_lock(self, holder: LockHolder) -> None:
        """Take the apply lock, or raise LockHeld naming its holder (a dead local holder's is taken over)."""
        ...

    def release_lock(self, lock_id: str) -> None: ...

    def unlock(self, lock_id: str) -> LockHolder | None: ...

    def start_journal(
        self, plan_id: str, commit: str | None, author: str | None, host: str, pid: int
    ) -> int: ...

    def finish_journal(self, journal_id: int, status: str, summary: JsonObject) -> None: ...

    def journal_for_plan(self, plan_id: str) -> JournalEntry | None: ...

    def recent_applies(self, limit: int = 10) -> list[JournalEntry]: ...

    def signing_key(self) -> bytes: ...

    def rotate_signing_key(self) -> None: ...

    # -- email sends ------------------------------------------------------------------------

    def record_send(self, live: LiveBroadcast, statuses: Sequence[str]) -> FrozenSend:
        """The broadcast, its send and its frozen audience, in one transaction."""
        ...

    def send_id_for(self, broadcast_id: str) -> int | None: ...

    def ledger(self) -> SqlLedger:
        """The hot-path ledger, on a connection of its own."""
        ...

    def crashed_to_uncertain(self) -> int: ...

    def requeue(self, statuses: Sequence[str]) -> int: ...

    def finish_send(self, broadcast_id: str) -> bool: ...

    def release_broadcast(self, broadcast_id: str) -> None: ...

    def failed_recipients(self, broadcast_id: str) -> list[FailedRecipient]: ...

    def dismissal_counts(self) -> dict[str, int]: ...

    # -- events -----------------------------------------------------------------------------

    def system_emails(self) -> dict[str, LiveSystemEmail]:
        """Installed system emails (the part of the snapshot events need)."""
        ...

    def event_for_key(self, key: str) -> RecordedEvent | None: ...

    def suppressed_for_all(self, email_keys: Iterable[str]) -> set[str]: ...

    def record_event(
        self,
        event_type: str,
        payload: JsonObject,
        key: str | None,
        emails: Sequence[QueuedEmail],
        result: JsonObject,
        now: datetime,
    ) -> RecordedEvent:
        """The event and everything it queues, in one transaction; a repeated key changes nothing."""
        ...

    def queue_depth(self, now: datetime) -> int: ...

    # -- dashboards -------------------------------------------------------------------------

    def customer(self, customer_id: str) -> CustomerRecord | None: ...

    def notices_for(self, customer_id: str, statuses: Sequence[str]) -> list[tuple[str, str]]:
        """(id, spec hash) of active notices targeted at the customer and not dismissed by them."""
        ...

    def feed_rows(
        self, customer_id: str, statuses: Sequence[str]
    ) -> tuple[CustomerRecord | None, list[tuple[str, str]]]:
        """The customer (None: unknown) and `notices_for` them, read together."""
        ...

    def notice_specs(self, ids: Sequence[str]) -> dict[str, BroadcastSpec]: ...

    def dismiss(self, notice_id: str, customer_id: str, now: datetime) -> None: ...

    def address_for_token(self, token: str) -> str | None: ...

    def suppress(
        self, email_key: str, scope: str, reason: str, source: str, now: datetime
    ) -> None: ...

    def replace_memberships(self, customer_id: str, rows: Sequence[MembershipRecord]) -> None: ...

    def dismissed(self, notice_id: str, customer_id: str) -> bool: ...

    def events_received(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds the apply lock."""

    lock_id: str
    holder: str
    host: str
    pid: int
    started_at: datetime

    def describe(self) -> str:
        return f"{self.holder} on {self.host} (pid {self.pid}) since {self.started_at:%Y-%m-%d %H:%M:%S} UTC, lock {self.lock_id}"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    id: int
    plan_id: str | None
    commit: str | None
    author: str | None
    host: str | None
    pid: int | None
    status: str
    summary: JsonObject | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class FrozenSend:
    """An email broadcast's audience, frozen into the ledger."""

    send_id: int
    recipients: int
    suppressed: int


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    email: str
    error: str | None
    attempts: int
