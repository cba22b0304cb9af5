"""How the messages of an email broadcast or a system email are built, from settings and layout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formataddr
from typing import Generic, TypeVar

from commsync.config.settings import Settings
from commsync.model import BroadcastSpec, Style, SystemEmailFields
from commsync.render.message import EmailTemplate, MessageFactory


def broadcast_factory(
    store_id: str, settings: Settings, layout: str | None, name: str, spec: BroadcastSpec
) -> MessageFactory:
    """How each recipient's message of email broadcast `name` is built."""
    mail = settings.mail
    template = EmailTemplate(
        subject=spec.subject,
        content=spec.content,
        format=spec.format,
        style=Style.HTML,
        sender=formataddr((mail.from_name, mail.from_address)),
        reply_to=mail.reply_to,
        unsubscribe=True,
        id_key=f"{store_id}/broadcast/{name}",
    )
    return MessageFactory(
        template,
        theme=mail.theme,
        static=settings.network_context,
        layout=layout,
        limits=settings.limits,
    )


def system_email_factory(
    store_id: str, settings: Settings, layout: str | None, slug: str, fields: SystemEmailFields
) -> MessageFactory:
    """How each message of system email `slug` (with these fields) is built."""
    mail = settings.mail
    sender = (
        formataddr((fields.sender.name or "", fields.sender.email))
        if fields.sender
        else formataddr((mail.from_name, mail.from_address))
    )
    template = EmailTemplate(
        subject=fields.subject,
        content=fields.content,
        format=fields.format,
        style=fields.style,
        sender=sender,
        reply_to=mail.reply_to,
        unsubscribe=False,
        id_key=f"{store_id}/system_email/{slug}",
    )
    return MessageFactory(
        template,
        theme=mail.theme,
        static=settings.network_context,
        layout=layout,
        limits=settings.limits,
    )


FACTORIES_KEPT = 100  # compiled emails a long-running process keeps (each up to 2 MB of lines)
K = TypeVar("K")


class Kept(Generic[K]):
    """The `limit` factories used last, by key: what a long-running worker keeps compiled (its
    emails may change thousands of times under it), the one used longest ago dropped first."""

    def __init__(self, limit: int = FACTORIES_KEPT) -> None:
        self.limit = limit
        self.factories: dict[K, MessageFactory] = {}  # in order of use, the last used last

    def get(self, key: K, make: Callable[[], MessageFactory]) -> MessageFactory:
        factory = self.factories.pop(key, None)
        if factory is None:
            factory = make()
            if len(self.factories) >= self.limit:
                del self.factories[next(iter(self.factories))]
        self.factories[key] = factory
        return factory

    def __len__(self) -> int:
        return len(self.factories)


@dataclass
class SystemEmailFactories:
    """Compiled system emails, reused across events (per email and version of its fields)."""

    store_id: str
    settings: Settings
    layout: str | None = None
    cache: Kept[tuple[str, str]] = field(default_factory=Kept)

    def get(self, slug: str, fields: SystemEmailFields) -> MessageFactory:
        return self.cache.get(
            (slug, fields.fields_hash()),
            lambda: system_email_factory(self.store_id, self.settings, self.layout, slug, fields),
        )
