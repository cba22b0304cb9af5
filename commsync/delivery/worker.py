"""The delivery worker (`commsync deliver`, and the one inside `commsync serve`).

It claims due system-email rows (delayed emails, retries), sends them, and records each outcome.
Several workers on one or several machines can share a store: rows are claimed with `SELECT …
FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite has one writer anyway), so every message is sent by
one worker only. On stop, in-flight messages finish and claimed-but-unsent rows are given back:
every message is either sent or still queued.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from commsync.config.settings import Settings
from commsync.delivery.engine import STALE_CLAIM, DeliveryReport, DueRunner, Listener, SendJob
from commsync.delivery.ratelimit import RateLimiter
from commsync.delivery.retry import WORKER_RETRIES, RetryPolicy
from commsync.delivery.transport import hostname
from commsync.delivery.transports import parse_transport
from commsync.model import LedgerRow
from commsync.render.message import Built, RenderError, date_header
from commsync.store.roles import Sends

Clock = Callable[[], datetime]
RECOVER_EVERY = timedelta(minutes=1)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _stored(row: LedgerRow) -> Built:
    """A system email's message, rendered when its event arrived; dated now."""
    if row.message is None:
        raise RenderError("no rendered message was stored for this row")
    return Built(date_header() + row.message, row.message_id or "", "")


class WorkerStore(Sends, Protocol):
    """The store roles the worker uses: its ledger."""


@dataclass
class Worker:
    """A delivery worker on one store."""

    store: WorkerStore
    settings: Settings
    env: Mapping[str, str]
    clock: Clock = _utcnow
    listener: Listener | None = None
    on_round: Callable[[int, DeliveryReport], None] | None = None
    policy: RetryPolicy = WORKER_RETRIES
    claimer: str = field(init=False)

    def __post_init__(self) -> None:
        self.claimer = f"{hostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def run(self, *, loop: bool, stop: threading.Event, poll: float = 1.0) -> DeliveryReport:
        mail = self.settings.mail
        transport = parse_transport(mail.transport, self.settings.root, self.env)
        ledger = self.store.ledger()
        job = SendJob(None, mail.from_address, _stored, claimer=self.claimer, clock=self.clock)
        runner = DueRunner(
            job,
            ledger,
            transport,
            RateLimiter(mail.max_rate),
            mail.connections,
            stop.is_set,
            self.policy,
            self.listener,
        )
        recovered_at: datetime | None = None
        try:
            while not stop.is_set():
                now = self.clock()
                if recovered_at is None or now - recovered_at >= RECOVER_EVERY:
                    # messages a vanished worker was sending: uncertain, never sent twice
                    ledger.recover_stale(now - STALE_CLAIM)
                    recovered_at = now
                claimed = await runner.round(now)
                if claimed and self.on_round is not None:
                    self.on_round(claimed, runner.report)
                if not loop:
                    break
                if not claimed:
                    await _idle(poll, stop)
        finally:
            await runner.close()
            ledger.release(self.claimer)
            ledger.close()
        return runner.report

    def run_blocking(
        self, *, loop: bool, stop: threading.Event | None = None, poll: float = 1.0
    ) -> DeliveryReport:
        return asyncio.run(self.run(loop=loop, stop=stop or threading.Event(), poll=poll))


async def _idle(seconds: float, stop: threading.Event) -> None:
    """Wait up to `seconds`, waking early when asked to stop."""
    for _ in range(max(1, int(seconds / 0.05))):
        if stop.is_set():
            return
        await asyncio.sleep(0.05)
