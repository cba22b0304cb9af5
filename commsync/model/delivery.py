"""The delivery ledger's rows as delivery sees them, and the transitions it records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from commsync.model.records import CustomerRecord
from commsync.model.vocab import DeliveryStatus


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One recipient of one send, with what personalisation needs."""

    id: int
    email: str
    email_key: str
    customer_id: str | None
    attempts: int
    first_name: str | None = None
    last_name: str | None = None
    display_name: str | None = None
    username: str | None = None
    message: bytes | None = None  # system emails: rendered when their event arrived
    message_id: str | None = None
    slug: str | None = None  # the system email, whose stats the outcome updates
    send_id: int | None = None  # system emails: the send (one event, one email) it belongs to
    email_hash: str | None = None  # system emails: the email's version its message was made with
    broadcast: str | None = None  # a broadcast's row claimed by a worker: which broadcast

    def customer(self) -> CustomerRecord:
        """The recipient as a customer record (for placeholders)."""
        return CustomerRecord(
            self.customer_id or "",
            self.email,
            self.username,
            self.first_name,
            self.last_name,
            self.display_name,
        )


@dataclass(frozen=True, slots=True)
class Record:
    """What happened to one row: the status it ends in (`queued` again for a retry)."""

    delivery_id: int
    status: DeliveryStatus
    detail: str = ""
    message_id: str | None = None
    slug: str | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Waiting:
    """Queued messages of one system email: how many, and when the first of them falls due."""

    count: int = 0
    next_due: datetime | None = None


@dataclass(frozen=True, slots=True)
class QueueState:
    """The delivery worker's queue (system-email messages) at one moment.

    `due` are queued and due now; `waiting` are queued for later (a `delay`, or a retry), the
    first of them due at `next_due`; `by_email` has both, per system email.
    """

    due: int = 0
    waiting: int = 0
    next_due: datetime | None = None
    by_email: Mapping[str, Waiting] = field(default_factory=dict)
    # email broadcasts not yet out: scheduled ones (the first `send_at`), sends in progress and
    # their recipients still queued
    scheduled: int = 0
    next_send_at: datetime | None = None
    sending: int = 0
    recipients_left: int = 0


@dataclass(frozen=True, slots=True)
class QueuedItem:
    """One message waiting in the delivery worker's queue (`commsync queue`)."""

    id: int
    email: str  # the system email's slug
    recipient: str
    due_at: datetime
    attempts: int  # earlier tries: a retry when > 0, with the last error
    last_error: str | None
    event: str | None
    event_key: str | None
    claimed: bool  # a worker has it in hand

    def why(self, now: datetime) -> str:
        """Why it has not gone yet."""
        if self.claimed:
            return "being sent"
        if self.attempts:
            return f"retry {self.attempts + 1} after: {self.last_error or 'a temporary failure'}"
        return "due now" if self.due_at <= now else "its email's delay"


@dataclass(frozen=True, slots=True)
class QueuedBroadcast:
    """An email broadcast the workers have yet to send: scheduled, or being sent."""

    id: str
    subject: str
    status: str  # scheduled | sending
    send_at: datetime | None
    recipients: int  # scheduled: 0 (the audience is resolved when the send starts)
    left: int  # recipients not yet sent to (queued or being sent)
    by_workers: bool  # sent by the delivery workers (else by the apply that started it)

    def why(self, now: datetime) -> str:
        if self.status == "scheduled":
            if self.send_at is not None and self.send_at > now:
                return "scheduled"
            return "due: waits for a delivery worker"
        return "being sent by the delivery workers" if self.by_workers else "being sent by apply"


@dataclass(frozen=True, slots=True)
class QueuedSend:
    """What an event queued of one system email, as the worker re-checks it when it comes due."""

    slug: str
    email_hash: str | None  # the email's version then (None: queued before commsync recorded it)
    event: str
    payload: Mapping[str, object]
