"""Delivering one email broadcast send: each recipient's message built from the frozen ledger."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from commsync.auth import unsubscribe_token
from commsync.config.settings import Settings
from commsync.delivery import ahead
from commsync.delivery.engine import DeliveryReport, Listener, SendJob, run_send
from commsync.delivery.ratelimit import RateLimiter
from commsync.delivery.retry import APPLY_RETRIES, RetryPolicy
from commsync.delivery.transports import parse_transport
from commsync.model import BroadcastSpec, LedgerRow
from commsync.render.emails import Kept, broadcast_factory
from commsync.render.message import UNSUBSCRIBE, Built, MessageFactory, RenderError
from commsync.render.values import customer_values
from commsync.store.roles import Control, Identity, Sends


class BroadcastStore(Identity, Sends, Control, Protocol):
    """The store roles a broadcast send uses: its ledger and the signing key."""


@dataclass
class BroadcastSender:
    """Builds each recipient's message of an email broadcast and delivers the send."""

    store: BroadcastStore
    settings: Settings
    layout: str | None
    env: Mapping[str, str]
    listener: Listener | None = None
    policy: RetryPolicy = APPLY_RETRIES
    destination: str | None = None  # the transport, once a send ran

    def check(self) -> None:
        """The transport can be built from the settings and the environment (else ConfigError)."""
        parse_transport(self.settings.mail.transport, self.settings.root, self.env)

    def __call__(self, name: str, spec: BroadcastSpec, send_id: int, total: int) -> DeliveryReport:
        settings = self.settings
        factory = broadcast_factory(self.store.store_id, settings, self.layout, name, spec)
        key = self.store.signing_key()
        mailbox = settings.unsubscribe_mailbox
        minted: dict[str, str] = {}  # the token of each row of the current batch, made once

        def tokens(rows: Sequence[LedgerRow]) -> list[tuple[str, str]]:
            minted.clear()
            minted.update((r.email_key, unsubscribe_token(key, r.email_key)) for r in rows)
            return [(token, email_key) for email_key, token in minted.items()]

        def build(row: LedgerRow) -> Built:
            values = customer_values(row.customer())
            token = minted.get(row.email_key) or unsubscribe_token(key, row.email_key)
            values[UNSUBSCRIBE] = settings.unsubscribe_url(token)
            return factory.build(row.email, values["customer_name"], values, mailbox)

        mail = settings.mail
        transport = parse_transport(mail.transport, settings.root, self.env)
        self.destination = transport.describe()
        ledger = self.store.ledger()
        try:
            job = SendJob(send_id, mail.from_address, build, tokens)
            limiter = RateLimiter(mail.max_rate)
            return run_send(
                job, ledger, transport, limiter, mail.connections, total, self.listener,
                self.policy, ahead.first_pass(total),
            )  # fmt: skip
        finally:
            ledger.close()


@dataclass
class WorkerBroadcasts:
    """How a delivery worker builds the messages of the broadcast sends it claims rows of.

    Each broadcast's factory is made once, from the spec frozen when its send started (the 100
    used last are kept); the layout is the repository's (a callable: read only once a
    broadcast row arrives).
    """

    store: BroadcastStore
    settings: Settings
    layout: Callable[[], str | None]
    factories: Kept[str] = field(default_factory=Kept)
    _key: bytes | None = None

    def _factory(self, broadcast_id: str) -> MessageFactory:
        def make() -> MessageFactory:
            spec = self.store.broadcast_spec(broadcast_id)
            if spec is None:
                raise RenderError(f"the broadcast {broadcast_id} is not in the store")
            return broadcast_factory(
                self.store.store_id, self.settings, self.layout(), broadcast_id, spec
            )

        return self.factories.get(broadcast_id, make)

    def _token(self, email_key: str) -> str:
        if self._key is None:
            self._key = self.store.signing_key()
        return unsubscribe_token(self._key, email_key)

    def tokens(self, rows: Sequence[LedgerRow]) -> list[tuple[str, str]]:
        """The unsubscribe tokens of claimed rows (token, email_key), saved before sending."""
        return [(self._token(r.email_key), r.email_key) for r in rows]

    def build(self, row: LedgerRow) -> Built:
        assert row.broadcast is not None
        values = customer_values(row.customer())
        values[UNSUBSCRIBE] = self.settings.unsubscribe_url(self._token(row.email_key))
        factory = self._factory(row.broadcast)
        return factory.build(
            row.email, values["customer_name"], values, self.settings.unsubscribe_mailbox
        )
