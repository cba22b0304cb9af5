"""The fixed vocabularies of the domain: every value a field can hold, named once.

They are `StrEnum`s, so they compare equal to (and serialise as) the strings operators write and
the store keeps; code that receives a plain string converts it once, at the boundary.
"""

from __future__ import annotations

from enum import StrEnum


class BroadcastKind(StrEnum):
    NOTICE = "notice"
    EMAIL = "email"


class Format(StrEnum):
    """How a template's content is written."""

    MARKDOWN = "markdown"
    HTML = "html"
    TEXT = "text"


class MessageType(StrEnum):
    """A notice's colour on the dashboard."""

    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"


class BroadcastStatus(StrEnum):
    """A live broadcast: notices are active or retracted. An email broadcast is scheduled
    (recorded, waiting for its `send_at`), then sending and sent; or missed (its `send_at` passed
    by more than its `max_lateness` before a worker could start it: never sent), or cancelled
    (`queue cancel --broadcast`: what had not gone out never will)."""

    ACTIVE = "active"
    RETRACTED = "retracted"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    MISSED = "missed"
    CANCELLED = "cancelled"


class DeliveryMode(StrEnum):
    """Who delivers an email broadcast (`mail.delivery`): `apply` itself, or the workers."""

    APPLY = "apply"
    WORKERS = "workers"


class EmailTarget(StrEnum):
    """Who a system email goes to."""

    CUSTOMER = "customer"
    ADMIN = "admin"


class Style(StrEnum):
    """html: multipart text + HTML in the layout; plain: text only."""

    HTML = "html"
    PLAIN = "plain"


class Imports(StrEnum):
    """Which registered defaults are installed without a file (`imports:`)."""

    NONE = "none"
    CRITICAL = "critical"
    ALL = "all"

    def installs(self, critical: bool) -> bool:
        """Whether a default (critical or not) is installed without a file under this policy."""
        return self is Imports.ALL or (self is Imports.CRITICAL and critical)


class DeliveryStatus(StrEnum):
    """One row of the delivery ledger: one message to one recipient."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    UNCERTAIN = "uncertain"
    CANCELLED = "cancelled"  # taken out of the queue (`commsync queue cancel`); never sent


class SuppressionScope(StrEnum):
    """marketing: no broadcasts (an unsubscribe); all: no email at all (a hard bounce)."""

    MARKETING = "marketing"
    ALL = "all"


class SuppressionReason(StrEnum):
    """Why an address gets no (marketing) email."""

    UNSUBSCRIBE = "unsubscribe"  # the link, one-click, or a mail to the unsubscribe address
    HARD_BOUNCE = "hard_bounce"  # the address does not exist: nothing is sent to it at all
    COMPLAINT = "complaint"  # marked as spam
    MANUAL = "manual"

    @property
    def scope(self) -> SuppressionScope:
        """The scope a suppression of this reason has unless told otherwise."""
        return (
            SuppressionScope.ALL
            if self is SuppressionReason.HARD_BOUNCE
            else SuppressionScope.MARKETING
        )


class JournalStatus(StrEnum):
    """An apply, as the journal records it."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class PayloadType(StrEnum):
    """The type of an event payload key."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ID = "id"  # an opaque identifier: an integer or a one-line string (42 and "42" are one id)
