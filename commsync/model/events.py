"""An event's outcome: the system emails it queued (input to the store) and its result."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from commsync.model.values import JsonObject, JsonValue
from commsync.model.vocab import DeliveryStatus


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One recipient of one system email: a rendered message, or why there is none."""

    email: str
    customer_id: str | None
    status: DeliveryStatus  # queued | failed | suppressed
    message: bytes | None = None
    message_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class QueuedEmail:
    slug: str
    due_at: datetime
    messages: tuple[QueuedMessage, ...]
    email_hash: str | None = None  # the version of the email they were rendered with


@dataclass(frozen=True, slots=True)
class EmailQueued:
    """What an event queued of one system email."""

    email: str
    due_at: datetime
    recipients: int
    failed: int = 0
    suppressed: int = 0
    errors: tuple[str, ...] = ()

    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "email": self.email,
            "due_at": self.due_at.isoformat(),
            "recipients": self.recipients,
        }
        if self.failed:
            out["failed"] = self.failed
        if self.suppressed:
            out["suppressed"] = self.suppressed
        if self.errors:
            out["errors"] = list(self.errors)
        return out

    @classmethod
    def from_json(cls, data: JsonValue) -> EmailQueued:
        assert isinstance(data, dict)
        errors = data.get("errors") or []
        assert isinstance(errors, list)
        return cls(
            email=str(data["email"]),
            due_at=datetime.fromisoformat(str(data["due_at"])),
            recipients=_int(data.get("recipients")),
            failed=_int(data.get("failed")),
            suppressed=_int(data.get("suppressed")),
            errors=tuple(str(e) for e in errors),
        )


@dataclass(frozen=True, slots=True)
class EmailSkipped:
    """A system email of the event that had nobody to go to."""

    email: str
    reason: str

    def to_json(self) -> JsonObject:
        return {"email": self.email, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class EventResult:
    """What firing an event did: the first result again for a repeated idempotency key."""

    event_id: int
    type: str
    emails: tuple[EmailQueued, ...]
    skipped: tuple[EmailSkipped, ...]
    duplicate: bool = False

    @property
    def messages(self) -> int:
        return sum(e.recipients for e in self.emails)

    @property
    def failed(self) -> int:
        return sum(e.failed for e in self.emails)

    def to_json(self) -> JsonObject:
        """The document the HTTP API returns (and the store keeps, without `duplicate`)."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "emails": [e.to_json() for e in self.emails],
            "skipped": [s.to_json() for s in self.skipped],
            "duplicate": self.duplicate,
        }

    @classmethod
    def from_json(cls, data: JsonValue, *, duplicate: bool) -> EventResult:
        assert isinstance(data, dict)
        emails, skipped = data.get("emails") or [], data.get("skipped") or []
        assert isinstance(emails, list) and isinstance(skipped, list)
        return cls(
            event_id=_int(data.get("event_id")),
            type=str(data.get("type")),
            emails=tuple(EmailQueued.from_json(e) for e in emails),
            skipped=tuple(
                EmailSkipped(str(s["email"]), str(s["reason"]))
                for s in skipped
                if isinstance(s, dict)
            ),
            duplicate=duplicate,
        )


def _int(value: JsonValue) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
