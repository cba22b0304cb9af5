"""Use case: an event arrives (`commsync event`, `POST /v1/events`) and its system emails are queued.

Every active system email of the event is rendered for its recipients — the payload's customer,
`mail.admins` for `target: admin`, and admins in copy when `send_copy_to_admin` — and queued, due
now or after its delay. An inactive email never sends; an email with no recipient is skipped
without blocking the others; a message that fails to render is recorded as failed with its
reason, never sent half-rendered. A repeated idempotency key queues nothing and returns the first
result.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formataddr

from commsync.api.core import Project, load, store_session
from commsync.catalog.payload import payload_problems
from commsync.delivery.transport import Outcome, parse_transport
from commsync.errors import CommsyncError, ValidationFailed
from commsync.model import (
    NETWORK_CONTEXT,
    Catalog,
    JsonObject,
    JsonValue,
    LiveSystemEmail,
    SystemEmailFields,
    parse_delay,
)
from commsync.render.message import EmailTemplate, MessageFactory, RenderError
from commsync.render.sandbox import placeholders
from commsync.repo.loader import LoadedRepository
from commsync.settings import Settings, is_address, parse_mailbox
from commsync.store.base import Store
from commsync.store.events import QueuedEmail, QueuedMessage


class EventRejected(CommsyncError):
    """The event cannot be accepted as sent; `problems` name the keys (HTTP 422)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("event refused: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    name: str
    customer_id: str | None = None


@dataclass
class EventService:
    """Everything firing an event needs; long-lived in `serve`, so compiled templates are reused."""

    store: Store
    settings: Settings
    catalog: Catalog
    layout: str | None = None  # the repository's layouts/email.html, if it has one
    factories: dict[tuple[str, str], MessageFactory] = field(default_factory=dict)

    def factory(self, email: LiveSystemEmail) -> MessageFactory:
        """How each message of this system email is built (cached per email version)."""
        key = (email.slug, email.fields.fields_hash())
        factory = self.factories.get(key)
        if factory is None:
            f, mail = email.fields, self.settings.mail
            sender = (
                formataddr((f.sender.name or "", f.sender.email))
                if f.sender
                else formataddr((mail.from_name, mail.from_address))
            )
            template = EmailTemplate(
                f.subject,
                f.content,
                f.format,
                f.style,
                sender,
                mail.reply_to,
                False,
                f"{self.store.store_id}/system_email/{email.slug}",
            )
            factory = MessageFactory(
                template, theme=mail.theme, static=self.settings.network_context, layout=self.layout
            )
            self.factories[key] = factory
        return factory

    def _admins(self) -> list[Recipient]:
        out = []
        for admin in self.settings.mail.admins:
            mailbox = parse_mailbox(admin)
            if mailbox is not None:
                out.append(Recipient(mailbox[1], mailbox[0]))
        return out

    def _recipients(self, email: LiveSystemEmail, payload: JsonObject) -> list[Recipient]:
        found: list[Recipient] = []
        if email.fields.target == "admin":
            found = self._admins()
        else:
            address = payload.get("customer_user_email")
            if isinstance(address, str) and is_address(address):
                cid = payload.get("customer_id")
                found = [
                    Recipient(
                        address,
                        str(payload.get("customer_name") or ""),
                        None if cid is None else str(cid),
                    )
                ]
            if email.fields.send_copy_to_admin:
                found += self._admins()
        unique: dict[str, Recipient] = {}
        for r in found:
            unique.setdefault(r.address.lower(), r)
        return list(unique.values())

    def _messages(
        self, email: LiveSystemEmail, recipients: list[Recipient], payload: JsonObject, uid: str
    ) -> tuple[QueuedMessage, ...]:
        blocked = self.store.suppressed_for_all(r.address.lower() for r in recipients)
        factory = self.factory(email)
        out = []
        for r in recipients:
            if r.address.lower() in blocked:
                out.append(
                    QueuedMessage(
                        r.address,
                        r.customer_id,
                        "suppressed",
                        error="the address bounced; suppressed",
                    )
                )
                continue
            try:
                built = factory.build(r.address, r.name, payload, key=uid, dated=False)
            except RenderError as exc:
                out.append(QueuedMessage(r.address, r.customer_id, "failed", error=str(exc)))
                continue
            out.append(
                QueuedMessage(r.address, r.customer_id, "queued", built.data, built.message_id)
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

    def fire(
        self,
        event_type: str,
        payload: JsonObject,
        key: str | None = None,
        now: datetime | None = None,
    ) -> JsonObject:
        """Check, render and queue; returns the event's result (the first one for a repeated key)."""
        event = self.catalog.events.get(event_type)
        if event is None:
            known = ", ".join(sorted(self.catalog.events))
            raise EventRejected([f"unknown event {event_type!r} (known: {known})"])
        emails = sorted(
            (
                e
                for e in self.store.system_emails().values()
                if e.fields.event == event_type and e.fields.active
            ),
            key=lambda e: e.slug,
        )
        payload = self._complete(payload)
        used = {
            n
            for e in emails
            for text in (e.fields.subject, e.fields.content)
            for n in placeholders(text)
        }
        problems = payload_problems(event, payload, used - set(NETWORK_CONTEXT))
        if problems:
            raise EventRejected(problems)
        if key is not None and (known_event := self.store.event_for_key(key)) is not None:
            return {**known_event.result, "duplicate": True}
        when = now or datetime.now(UTC)
        uid = uuid.uuid4().hex
        queued, summary, skipped = [], [], []
        for email in emails:
            recipients = self._recipients(email, payload)
            if not recipients:
                reason = (
                    "no admins in mail.admins"
                    if email.fields.target == "admin"
                    else "no customer_user_email in the payload"
                )
                skipped.append({"email": email.slug, "reason": reason})
                continue
            due = when + timedelta(minutes=parse_delay(email.fields.delay) or 0)
            messages = self._messages(email, recipients, payload, uid)
            queued.append(QueuedEmail(email.slug, due, messages))
            counts: dict[str, JsonValue] = {
                "email": email.slug,
                "due_at": due.isoformat(),
                "recipients": len(messages),
            }
            counts.update(
                {
                    status: sum(1 for m in messages if m.status == status)
                    for status in ("failed", "suppressed")
                    if any(m.status == status for m in messages)
                }
            )
            errors = sorted({m.error for m in messages if m.status == "failed" and m.error})
            if errors:
                counts["errors"] = list(errors)
            summary.append(counts)
        result: JsonObject = {"type": event_type, "emails": summary, "skipped": skipped}  # type: ignore[dict-item]
        recorded = self.store.record_event(event_type, payload, key, queued, result, when)
        return {**recorded.result, "duplicate": recorded.duplicate}


def fire_event(
    project: Project, event_type: str, payload: JsonObject, key: str | None = None
) -> JsonObject:
    """`commsync event`: the catalog from the working tree, the system emails from the store."""
    loaded = load(project)
    if loaded.settings is None:
        raise ValidationFailed(loaded.diagnostics)
    with store_session(loaded.settings.store_url) as store:
        return EventService(store, loaded.settings, loaded.catalog, loaded.layout).fire(
            event_type, payload, key
        )


def _effective(loaded: LoadedRepository, store: Store, slug: str) -> SystemEmailFields:
    """The email as the repository has it (so it can be tried before apply), else as installed."""
    for email in loaded.emails:
        if email.slug == slug:
            if email.custom is not None:
                return email.custom
            default = loaded.catalog.defaults.get(slug)
            assert default is not None, "an override without a default is a validation error"
            return default.fields.with_values(email.overrides)
    if slug in loaded.catalog.defaults:
        return loaded.catalog.defaults[slug].fields
    installed = store.system_emails().get(slug)
    if installed is None:
        known = ", ".join(sorted(set(loaded.catalog.defaults) | {e.slug for e in loaded.emails}))
        raise CommsyncError(f"unknown system email {slug!r} (known: {known})")
    return installed.fields


def test_send(project: Project, slug: str, to: str, data: JsonObject | None = None) -> str:
    """Render SLUG with its event's mock payload (or `data`) and send it to one address, now.

    Nothing is recorded in the ledger or the stats. Returns where it went.
    """
    if not is_address(to):
        raise CommsyncError(f"{to!r} is not an email address")
    loaded = load(project)
    settings = loaded.settings
    if settings is None:
        raise ValidationFailed(loaded.diagnostics)
    with store_session(settings.store_url) as store:
        fields = _effective(loaded, store, slug)
        event = loaded.catalog.events[fields.event]
        problems = payload_problems(event, data or {}, ())
        if problems:
            raise CommsyncError("--data: " + "; ".join(problems))
        payload = {**event.mock_payload(), **(data or {}), "customer_user_email": to}
        email = LiveSystemEmail(slug, fields, fields.fields_hash())
        built = (
            EventService(store, settings, loaded.catalog, loaded.layout)
            .factory(email)
            .build(to, str(payload.get("customer_name", "")), payload, key="test")
        )
    transport = parse_transport(settings.mail.transport, settings.root, dict(project.env))

    async def send() -> Outcome:
        session = transport.open()
        try:
            return await session.send(settings.mail.from_address, to, built.data)
        finally:
            await session.close()

    outcome = asyncio.run(send())
    if outcome.kind != "sent":
        raise CommsyncError(f"the test email was not delivered: {outcome.detail}")
    return transport.describe()
