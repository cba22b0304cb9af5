"""The delivery ledger's rows as delivery sees them, and the transitions it records."""

from __future__ import annotations

from dataclasses import dataclass
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
