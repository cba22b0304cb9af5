"""What the rest of commsync needs from the live store, one role at a time.

Each use case depends on the roles it uses (the feed on `Dashboards`, delivery on `Ledger`, …);
`Store` is all of them, as `SqlStore` implements them on SQLite and PostgreSQL. One contract test
suite runs against every implementation.

It is longer than 400 lines because every role the store plays is named here, one Protocol
each with its values, so that the whole contract of a store is read in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from commsync.model import (
    Audience,
    BroadcastSpec,
    BroadcastStatus,
    CustomerRecord,
    DeliveryStatus,
    EventResult,
    ImportCounts,
    JournalStatus,
    JsonObject,
    LedgerRow,
    LiveBroadcast,
    LiveSnapshot,
    LiveSystemEmail,
    MembershipRecord,
    ProductRecord,
    QueuedBroadcast,
    QueuedEmail,
    QueuedItem,
    QueuedSend,
    QueueState,
    Record,
    Suppression,
    SuppressionRecord,
    SuppressionScope,
    Targets,
)

# -- values the roles exchange ----------------------------------------------------------------


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
    status: JournalStatus
    summary: JsonObject | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class BroadcastCancel:
    """What `queue cancel --broadcast` did: the status it found (scheduled or sending: now
    cancelled; anything else: nothing done), recipients cancelled, recipients already sent to."""

    status: str
    cancelled: int
    sent: int


@dataclass(frozen=True, slots=True)
class StartedSend:
    """What the workers' scheduler did with a due scheduled broadcast."""

    broadcast_id: str
    status: BroadcastStatus  # sending (started) or missed
    recipients: int


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


ImportProgress = Callable[[int], None]  # rows staged so far
AllowRemoval = Callable[[int, int], None]  # (would remove, exist now): raises to refuse


class RowsRefused(Exception):
    """Rows of an import the store refuses, as (line, message): duplicates, unknown references."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        super().__init__(f"{len(problems)} row(s) refused")
        self.problems = problems


# -- the roles --------------------------------------------------------------------------------


class Identity(Protocol):
    @property
    def store_id(self) -> str:
        """A random id fixed when the store was created; plans name the store they were made for."""
        ...

    @property
    def display_url(self) -> str:
        """The store URL with any password hidden."""
        ...

    def close(self) -> None: ...


class PlatformData(Protocol):
    """Customers, products and memberships, as the platform reports them; audiences over them."""

    def product_slugs(self) -> frozenset[str]: ...

    def match_customers(self, refs: Collection[str]) -> Mapping[str, tuple[str, ...]]:
        """For each ref, the ids of customers whose id, email (any case) or username it equals."""
        ...

    def existing_customer_ids(self, ids: Collection[str]) -> frozenset[str]: ...

    def customer(self, customer_id: str) -> CustomerRecord | None:
        """The customer; None if there is none, or it was marked deleted."""
        ...

    def count_audiences(
        self, targets: Collection[Targets], statuses: Sequence[str]
    ) -> Mapping[Targets, Audience]:
        """Distinct customers each target selection reaches, counted in SQL."""
        ...

    def upsert_customers(self, rows: Sequence[CustomerRecord]) -> ImportCounts: ...

    def upsert_products(self, rows: Sequence[ProductRecord]) -> ImportCounts: ...

    def upsert_memberships(self, rows: Sequence[MembershipRecord]) -> ImportCounts: ...

    def replace_memberships(self, customer_id: str, rows: Sequence[MembershipRecord]) -> None:
        """The customer's memberships become exactly `rows`, in one transaction."""
        ...

    def delete_customer(self, customer_id: str) -> bool:
        """Mark the customer deleted and end their memberships; False if there is none."""
        ...

    def broadcasts_targeting_product(self, slug: str) -> list[str]:
        """Ids of the broadcasts in the store whose targets name this product."""
        ...

    def delete_product(self, slug: str) -> bool:
        """Remove the product and its memberships; False if there is none."""
        ...


class Imports(Protocol):
    """A data file's rows, streamed in one transaction: all of them or none (`store/imports.py`).

    Rows are (line, record). Duplicates and unknown references raise `RowsRefused` with every
    refused line; an exception from the rows themselves (the reader's) rolls back too. With
    `sync`, what the file lacks is removed, after `sync(would_remove, exist_now)` returns (it
    raises to refuse). `progress(rows)` is called as rows are staged. An import that writes
    memberships counts the audience histogram for the qualifying `statuses` at its end, so the
    next plan need not.
    """

    def import_customers(
        self,
        rows: Iterable[tuple[int, CustomerRecord]],
        *,
        sync: AllowRemoval | None = None,
        progress: ImportProgress | None = None,
        statuses: Sequence[str] = (),
    ) -> ImportCounts: ...

    def import_products(
        self,
        rows: Iterable[tuple[int, ProductRecord]],
        *,
        progress: ImportProgress | None = None,
    ) -> ImportCounts: ...

    def import_memberships(
        self,
        rows: Iterable[tuple[int, MembershipRecord]],
        *,
        sync: AllowRemoval | None = None,
        progress: ImportProgress | None = None,
        statuses: Sequence[str] = (),
    ) -> ImportCounts: ...


class ManagedObjects(Protocol):
    """The broadcasts and system emails apply manages."""

    def snapshot(self) -> LiveSnapshot:
        """Managed broadcasts and installed system emails, with progress and stats."""
        ...

    def system_emails(self) -> dict[str, LiveSystemEmail]:
        """Installed system emails (the part of the snapshot events need)."""
        ...

    def put_broadcast(self, live: LiveBroadcast) -> None:
        """Create or replace a managed broadcast (spec, status, provenance, targets)."""
        ...

    def release_broadcast(self, broadcast_id: str) -> None:
        """No longer managed (its file was removed after it was sent)."""
        ...

    def put_system_email(self, live: LiveSystemEmail) -> None:
        """Create or replace an installed system email; its stats are kept."""
        ...

    def delete_system_email(self, slug: str) -> None: ...

    def dismissal_counts(self) -> dict[str, int]: ...


class SendLog(Protocol):
    """An apply's send log: each message's `sending` mark and the outcomes before it, appended
    to a file in one write; folded into the ledger every few hundred rows (store/sendlog.py)."""

    def mark(self, done: Sequence[Record], start: int | None) -> bool:
        """Log finished rows and, with `start`, mark that row `sending` (False, and not marked:
        it was suppressed or cancelled since its batch was read)."""
        ...

    def fold(self) -> None:
        """Write what the log holds into the ledger, in one transaction."""
        ...

    def close(self) -> None:
        """Fold, and remove the log."""
        ...


class Ledger(Protocol):
    """The delivery ledger's per-message hot path, on a connection of its own."""

    def transitions(
        self, batch: Sequence[tuple[Sequence[Record], int | None]], claimer: str | None = None
    ) -> list[bool]:
        """Record finished rows and mark next rows `sending`, all in one commit.

        For each (done, start): False when `start` could not be marked (its address was
        suppressed meanwhile), else True. With `claimer`, rows are claimed system-email rows.
        """
        ...

    def transition(
        self, done: Sequence[Record], start: int | None, claimer: str | None = None
    ) -> bool: ...

    def next_batch(self, send_id: int, after_id: int, limit: int) -> list[LedgerRow]: ...

    def claim_due(
        self, claimer: str, now: datetime, limit: int, stale_before: datetime
    ) -> list[LedgerRow]:
        """Claim up to `limit` due system-email rows; concurrent workers never claim the same row."""
        ...

    def release(self, claimer: str) -> int:
        """Give back claimed rows not yet sent (a worker stopping)."""
        ...

    def recover_stale(self, before: datetime) -> int:
        """System-email rows a vanished worker left `sending` since `before`: uncertain."""
        ...

    def heartbeat(self, claimer: str, host: str, pid: int) -> None:
        """This delivery worker is alive."""
        ...

    def stopped(self, claimer: str) -> None:
        """This delivery worker stopped cleanly."""
        ...

    def recover_dead(self, silent_since: datetime) -> tuple[int, int]:
        """Workers silent since then are gone: their `sending` rows uncertain, their claims
        released. (uncertain, released)"""
        ...

    def row_state(self, delivery_id: int) -> tuple[str, str | None, bool]:
        """(status, claimed by, address suppressed now) of one row."""
        ...

    def abandon(self, claimer: str) -> tuple[int, int]:
        """After the store failed under a worker: its claims given back, and the rows it had
        `sending` (their outcome could not be recorded) made `uncertain`. (released, uncertain)"""
        ...

    def suppressed(self, email_keys: Sequence[str]) -> set[str]: ...

    def save_tokens(self, tokens: Sequence[tuple[str, str]]) -> None:
        """Remember unsubscribe tokens (token, email_key) so the unsubscribe page finds them."""
        ...

    def sendlog(self) -> SendLog | None:
        """A send log for an apply's send (a store in a SQLite file), else None: each group of
        marks and outcomes is then committed as it comes."""
        ...

    def close(self) -> None: ...


class Sends(Protocol):
    """Email broadcast sends: their frozen audiences and how they went."""

    def record_send(
        self, live: LiveBroadcast, statuses: Sequence[str], *, by_workers: bool = False
    ) -> FrozenSend | None:
        """The broadcast, its send and its frozen audience, in one transaction; None when a
        scheduled broadcast was started meanwhile (by a delivery worker)."""
        ...

    def schedule_broadcast(self, live: LiveBroadcast) -> bool:
        """Record (or change) a scheduled email broadcast; False when a worker started it first."""
        ...

    def end_schedule(self, broadcast_id: str, *, missed: bool) -> bool:
        """A scheduled broadcast recorded missed, or forgotten; False when it had started."""
        ...

    def start_due_broadcasts(self, now: datetime, statuses: Sequence[str]) -> list[StartedSend]:
        """Start (or record missed) every scheduled broadcast whose send_at has passed."""
        ...

    def finish_worker_sends(self) -> list[str]:
        """Close the workers' sends with no row left to send; their broadcast ids."""
        ...

    def hand_over(self, broadcast_id: str) -> None:
        """An interrupted apply's send goes to the delivery workers."""
        ...

    def broadcast_spec(self, broadcast_id: str) -> BroadcastSpec | None:
        """The spec of a broadcast (as frozen when its send started)."""
        ...

    def queued_broadcasts(self) -> list[QueuedBroadcast]:
        """Email broadcasts not yet out: scheduled, or being sent."""
        ...

    def cancel_broadcast(self, broadcast_id: str, now: datetime) -> BroadcastCancel | None:
        """The emergency brake (None: no such email broadcast)."""
        ...

    def send_id_for(self, broadcast_id: str) -> int | None: ...

    def ledger(self) -> Ledger:
        """The hot-path ledger, on a connection of its own."""
        ...

    def crashed_to_uncertain(self) -> int:
        """Broadcast rows left `sending` by a crashed apply become `uncertain`."""
        ...

    def requeue(self, statuses: Sequence[DeliveryStatus]) -> int:
        """Broadcast rows in `statuses` go back to `queued`."""
        ...

    def finish_send(self, broadcast_id: str) -> bool:
        """Mark the broadcast `sent` when no row is left to send; True if it is."""
        ...

    def failed_recipients(self, broadcast_id: str) -> list[FailedRecipient]: ...


class Dashboards(Protocol):
    """The notices feed, dismissals and unsubscribes: what customers themselves do."""

    def feed_customer(
        self, customer_id: str, statuses: Sequence[str]
    ) -> tuple[CustomerRecord, frozenset[str], frozenset[str]] | None:
        """The customer (None: unknown), the products they hold in one of `statuses`, and the
        ids of the notices they dismissed: with `active_notices`, all their feed needs."""
        ...

    def notices_for(self, customer_id: str, statuses: Sequence[str]) -> list[tuple[str, str]]:
        """(id, spec hash) of active notices targeted at the customer and not dismissed by them."""
        ...

    def feed_changes(self, since: int | None) -> tuple[int, frozenset[str] | None]:
        """The feed generation now and whose feeds changed since `since` (None: everyone's or
        unknown); cheap when nothing changed (the response cache asks on every request)."""
        ...

    def active_notices(self) -> list[tuple[str, BroadcastSpec]]:
        """Every active notice, newest first (then by id): the feed's index of notices."""
        ...

    def dismiss(self, notice_id: str, customer_id: str, now: datetime) -> None:
        """Idempotent: dismissing twice is dismissing once."""
        ...

    def dismissed(self, notice_id: str, customer_id: str) -> bool: ...

    def address_for_token(self, token: str) -> str | None: ...

    def suppress(
        self, email_key: str, scope: SuppressionScope, reason: str, source: str, now: datetime
    ) -> None:
        """Record a suppression; an existing one for the address is kept."""
        ...


class Suppressions(Protocol):
    """The suppression list, as operators keep it (`commsync suppressions`)."""

    def suppressions(self, limit: int) -> tuple[int, list[Suppression]]:
        """How many addresses are suppressed, and the newest `limit` of them."""
        ...

    def add_suppressions(
        self, rows: Sequence[SuppressionRecord], source: str, now: datetime
    ) -> tuple[int, int]:
        """All in one transaction: (added, made stronger)."""
        ...

    def remove_suppressions(self, email_keys: Sequence[str]) -> list[str]:
        """All or none: the addresses not suppressed (then nothing was removed)."""
        ...


class Events(Protocol):
    """Events received and the system emails they queued."""

    def event_for_key(self, key: str) -> EventResult | None:
        """The first result of the event with this idempotency key (marked duplicate)."""
        ...

    def suppressed_for_all(self, email_keys: Iterable[str]) -> set[str]:
        """Addresses that must get no email at all (hard bounces), not only no marketing."""
        ...

    def record_event(
        self,
        event_type: str,
        payload: JsonObject,
        key: str | None,
        emails: Sequence[QueuedEmail],
        result: EventResult,
        now: datetime,
    ) -> EventResult:
        """The event and everything it queues, in one transaction; a repeated key changes nothing
        and returns the first result."""
        ...

    def queue_state(self, now: datetime) -> QueueState:
        """What the delivery worker's queue holds now: due, waiting, the next due time, per email."""
        ...

    def queued_send(self, send_id: int) -> QueuedSend | None:
        """A system-email send as its event queued it: the email, its version then, the event
        and its payload (for rendering the messages again with the email's current version)."""
        ...

    def queued_messages(self, limit: int) -> list[QueuedItem]:
        """Queued system-email messages, the soonest due first."""
        ...

    def cancel_queued(
        self,
        now: datetime,
        *,
        ids: Sequence[int] = (),
        email: str | None = None,
        event_key: str | None = None,
    ) -> int:
        """Queued system-email messages that match every criterion given become `cancelled`
        (never sent); how many. A message a worker has in hand but not started is cancelled too:
        the worker finds it no longer queued and leaves it."""
        ...

    def events_received(self) -> dict[str, int]: ...


class Control(Protocol):
    """One apply at a time, the journal of applies, and the signing key."""

    def current_lock(self) -> LockHolder | None: ...

    def acquire_lock(self, holder: LockHolder) -> None:
        """Take the apply lock, or raise LockHeld naming its holder (a dead local holder's is taken over)."""
        ...

    def release_lock(self, lock_id: str) -> None: ...

    def unlock(self, lock_id: str) -> LockHolder | None: ...

    def start_journal(
        self, plan_id: str, commit: str | None, author: str | None, host: str, pid: int
    ) -> int: ...

    def finish_journal(
        self, journal_id: int, status: JournalStatus, summary: JsonObject
    ) -> None: ...

    def journal_for_plan(self, plan_id: str) -> JournalEntry | None: ...

    def recent_applies(self, limit: int = 10) -> list[JournalEntry]: ...

    def signing_key(self) -> bytes: ...

    def rotate_signing_key(self) -> None: ...

    def probe(self, timeout: float) -> None:
        """Raise unless the store takes a write within `timeout` seconds."""
        ...


class ParsedFiles(Protocol):
    """Broadcast files as a plan parsed them, by key (repo/parsecache.py), for the next plan."""

    def parsed_files(self, keys: Collection[str]) -> dict[str, str]: ...

    def keep_parsed_files(self, entries: Mapping[str, str]) -> None: ...


class PlanSource(ParsedFiles, Protocol):
    """What `plan` reads from the store, and the caches it keeps there: `SqlStore`, or the
    light reader of a SQLite store at this schema (store/light.py), which needs no SQLAlchemy."""

    def product_slugs(self) -> frozenset[str]: ...

    def match_customers(self, refs: Collection[str]) -> Mapping[str, tuple[str, ...]]: ...

    def snapshot(self) -> LiveSnapshot: ...

    def count_audiences(
        self, targets: Collection[Targets], statuses: Sequence[str]
    ) -> Mapping[Targets, Audience]: ...


class Store(
    Identity,
    PlatformData,
    Imports,
    ManagedObjects,
    Sends,
    Dashboards,
    Suppressions,
    Events,
    Control,
    ParsedFiles,
    Protocol,
):
    """The live store: every role."""
