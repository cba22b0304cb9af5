"""An event arrives (`commsync event`, `POST /v1/events`) and its system emails are queued.

Every active system email of the event is rendered for its recipients — the payload's customer,
`mail.admins` for `target: admin`, and admins in copy when `send_copy_to_admin` — and queued, due
now or after its delay. An inactive email never sends; an email with no recipient is skipped
without blocking the others; a message that fails to render is recorded as failed with its
reason, never sent half-rendered. A repeated idempotency key queues nothing and returns the first
result.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from commsync.catalog.payload import payload_problems
from commsync.config.settings import Settings
from commsync.errors import InvalidInput
from commsync.model import (
    NETWORK_CONTEXT,
    Catalog,
    DeliveryStatus,
    EmailQueued,
    EmailSkipped,
    EmailTarget,
    EventDef,
    EventResult,
    JsonObject,
    LiveSystemEmail,
    QueuedEmail,
    QueuedMessage,
)
from commsync.model.durations import parse_minutes
from commsync.model.mail import is_address, parse_mailbox
from commsync.render.emails import SystemEmailFactories
from commsync.render.message import RenderError
from commsync.render.sandbox import placeholders
from commsync.store.roles import Events, Identity, ManagedObjects, PlatformData


class EventRejected(InvalidInput):
    """The event cannot be accepted as sent; `problems` name the keys (HTTP 422)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems, "event refused: " + "; ".join(problems))


class EventStore(Identity, Events, ManagedObjects, PlatformData, Protocol):
    """The store roles an event uses."""


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    name: str
    customer_id: str | None = None


def admins(settings: Settings) -> list[Recipient]:
    """`mail.admins` as recipients."""
    out = []
    for admin in settings.mail.admins:
        mailbox = parse_mailbox(admin)
        if mailbox is not None:
            out.append(Recipient(mailbox[1], mailbox[0]))
    return out


def recipients(settings: Settings, email: LiveSystemEmail, payload: JsonObject) -> list[Recipient]:
    """Who one system email goes to for this payload (each address once)."""
    found: list[Recipient] = []
    if email.fields.target == EmailTarget.ADMIN:
        found = admins(settings)
    else:
        address = payload.get("customer_user_email")
        if isinstance(address, str) and is_address(address):
            cid = payload.get("customer_id")
            name = str(payload.get("customer_name") or "")
            found = [Recipient(address, name, None if cid is None else str(cid))]
        if email.fields.send_copy_to_admin:
            found += admins(settings)
    unique: dict[str, Recipient] = {}
    for r in found:
        unique.setdefault(r.address.lower(), r)
    return list(unique.values())


def _failed(recipient: Recipient, error: str) -> QueuedMessage:
    return QueuedMessage(
        recipient.address, recipient.customer_id, DeliveryStatus.FAILED, error=error
    )


@dataclass
class EventService:
    """Everything firing an event needs; long-lived in `serve`, so compiled templates are reused."""

    store: EventStore
    settings: Settings
    catalog: Catalog
    layout: str | None = None  # the repository's layouts/email.html, if it has one
    factories: SystemEmailFactories = field(init=False)

    def __post_init__(self) -> None:
        self.factories = SystemEmailFactories(self.store.store_id, self.settings, self.layout)

    def _messages(
        self, email: LiveSystemEmail, to: Sequence[Recipient], payload: JsonObject, uid: str
    ) -> tuple[QueuedMessage, ...]:
        blocked = self.store.suppressed_for_all(r.address.lower() for r in to)
        try:
            factory = self.factories.get(email.slug, email.fields)
        except RenderError as exc:  # the email cannot be compiled: every message fails, said why
            return tuple(_failed(r, str(exc)) for r in to)
        out = []
        for r in to:
            if r.address.lower() in blocked:
                error = "the address bounced; suppressed"
                out.append(
                    QueuedMessage(r.address, r.customer_id, DeliveryStatus.SUPPRESSED, error=error)
                )
                continue
            try:
                built = factory.build(r.address, r.name, payload, key=uid, dated=False)
            except RenderError as exc:
                out.append(_failed(r, str(exc)))
                continue
            queued = DeliveryStatus.QUEUED
            out.append(
                QueuedMessage(r.address, r.customer_id, queued, built.data, built.message_id)
            )
        return tuple(out)

    def _complete(self, payload: JsonObject) -> JsonObject:
        """A payload naming a known `customer_id` gets that customer's address and name if it lacks them."""
        cid = payload.get("customer_id")
        if cid is None or isinstance(cid, bool) or not isinstance(cid, str | int):
            return payload
        if (
            payload.get("customer_user_email") is not None
            and payload.get("customer_name") is not None
        ):
            return payload
        customer = self.store.customer(str(cid))
        if customer is None:
            return payload
        known: JsonObject = {"customer_user_email": customer.email, "customer_name": customer.name}
        return {**known, **{k: v for k, v in payload.items() if v is not None}}

    def _active(self, event_type: str) -> list[LiveSystemEmail]:
        emails = self.store.system_emails().values()
        return sorted(
            (e for e in emails if e.fields.event == event_type and e.fields.active),
            key=lambda e: e.slug,
        )

    def _event(self, event_type: str) -> EventDef:
        event = self.catalog.events.get(event_type)
        if event is None:
            known = ", ".join(sorted(self.catalog.events))
            raise EventRejected([f"unknown event {event_type!r} (known: {known})"])
        return event

    def _check(self, event: EventDef, emails: list[LiveSystemEmail], payload: JsonObject) -> None:
        used = {
            n
            for e in emails
            for text in (e.fields.subject, e.fields.content)
            for n in placeholders(text)
        }
        problems = payload_problems(event, payload, used - set(NETWORK_CONTEXT))
        if problems:
            raise EventRejected(problems)

    def _queue(
        self,
        email: LiveSystemEmail,
        to: list[Recipient],
        payload: JsonObject,
        uid: str,
        when: datetime,
    ) -> tuple[QueuedEmail, EmailQueued]:
        due = when + timedelta(minutes=parse_minutes(email.fields.delay) or 0)
        messages = self._messages(email, to, payload, uid)
        errors = sorted(
            {m.error for m in messages if m.status == DeliveryStatus.FAILED and m.error}
        )
        summary = EmailQueued(
            email=email.slug,
            due_at=due,
            recipients=len(messages),
            failed=sum(1 for m in messages if m.status == DeliveryStatus.FAILED),
            suppressed=sum(1 for m in messages if m.status == DeliveryStatus.SUPPRESSED),
            errors=tuple(errors),
        )
        return QueuedEmail(email.slug, due, messages, email.applied_hash), summary

    def fire(
        self,
        event_type: str,
        payload: JsonObject,
        key: str | None = None,
        now: datetime | None = None,
    ) -> EventResult:
        """Check, render and queue; returns the event's result (the first one for a repeated key)."""
        event = self._event(event_type)
        emails = self._active(event_type)
        payload = self._complete(payload)
        self._check(event, emails, payload)
        if key is not None and (known := self.store.event_for_key(key)) is not None:
            return known
        when = now or datetime.now(UTC)
        uid = uuid.uuid4().hex
        queued, summary, skipped = [], [], []
        for email in emails:
            to = recipients(self.settings, email, payload)
            if not to:
                reason = (
                    "no admins in mail.admins"
                    if email.fields.target == EmailTarget.ADMIN
                    else "no customer_user_email in the payload"
                )
                skipped.append(EmailSkipped(email.slug, reason))
                continue
            rows, counts = self._queue(email, to, payload, uid, when)
            queued.append(rows)
            summary.append(counts)
        result = EventResult(0, event_type, tuple(summary), tuple(skipped))
        return self.store.record_event(event_type, payload, key, queued, result, when)
