"""A queued system email is checked again when it comes due (SPEC §9, the queue).

An event renders its messages when it arrives; a delayed one may wait hours, while the operator
changes the email. When the delivery worker claims a message it asks `Recheck`, which compares
the email now with the version the message was rendered with:

- the email was deleted or deactivated, now belongs to another event, or no longer goes to this
  address (its target or its copy to admin changed) → `NotToSend`: the message is `cancelled`;
- any other change (subject, content, format, style, layout) → rendered again, from the event's
  stored payload, with the current version; a placeholder the payload lacks fails that message
  with the reason (`RenderError`), never a blank;
- no change → the message as it was rendered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from commsync.config.settings import Settings
from commsync.delivery.engine import NotToSend
from commsync.delivery.worker import stored_message
from commsync.events.service import recipients
from commsync.model import JsonObject, LedgerRow, LiveSystemEmail, QueuedSend
from commsync.render.emails import SystemEmailFactories
from commsync.render.message import Built, date_header

LIVE_TTL = 2.0  # seconds the worker trusts its copy of the installed system emails


class RecheckStore(Protocol):
    def system_emails(self) -> dict[str, LiveSystemEmail]: ...

    def queued_send(self, send_id: int) -> QueuedSend | None: ...


@dataclass
class Recheck:
    """`Recheck(store, settings, factories)(row)`: the message to send for a claimed row."""

    store: RecheckStore
    settings: Settings
    factories: Callable[[], SystemEmailFactories]  # compiled lazily: most messages need none
    sends: dict[int, QueuedSend | None] = field(default_factory=dict)
    _live: tuple[Mapping[str, LiveSystemEmail], float] | None = None

    def _emails(self) -> Mapping[str, LiveSystemEmail]:
        now = time.monotonic()
        if self._live is None or now - self._live[1] > LIVE_TTL:
            self._live = (self.store.system_emails(), now)
        return self._live[0]

    def _send(self, send_id: int) -> QueuedSend | None:
        if send_id not in self.sends:
            if len(self.sends) > 10_000:
                self.sends.clear()
            self.sends[send_id] = self.store.queued_send(send_id)
        return self.sends[send_id]

    def __call__(self, row: LedgerRow) -> Built:
        stored = stored_message(row)
        if row.slug is None or row.send_id is None:
            return stored
        # the common case costs a dictionary lookup: the claim brought the slug and version
        email = self._emails().get(row.slug)
        if email is None:
            raise NotToSend(f"the system email {row.slug} was deleted after the event")
        if not email.fields.active:
            raise NotToSend(f"the system email {row.slug} was deactivated after the event")
        if row.email_hash is None or email.applied_hash == row.email_hash:
            return stored
        send = self._send(row.send_id)
        if send is None:
            return stored
        if email.fields.event != send.event:
            raise NotToSend(
                f"the system email {send.slug} now belongs to the event {email.fields.event}"
            )
        payload: JsonObject = dict(send.payload)  # type: ignore[arg-type]
        wanted = {r.address.lower(): r for r in recipients(self.settings, email, payload)}
        recipient = wanted.get(row.email.lower())
        if recipient is None:
            raise NotToSend(
                f"the system email {send.slug} no longer goes to this address (its target or "
                "its copy to admin changed after the event)"
            )
        factory = self.factories().get(email.slug, email.fields)
        rebuilt = factory.build(
            recipient.address, recipient.name, payload, key=f"send-{row.send_id}", dated=False
        )
        return Built(date_header() + rebuilt.data, rebuilt.message_id, rebuilt.subject)
