"""Use case: the delivery worker (`commsync deliver`, and the one inside `commsync serve`).

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from commsync.api.core import Project, load_settings, store_session
from commsync.delivery.engine import STALE_CLAIM, DeliveryReport, DueRunner, Listener, SendJob
from commsync.delivery.ratelimit import RateLimiter
from commsync.delivery.transport import hostname, parse_transport
from commsync.render.message import Built, RenderError, date_header
from commsync.settings import Settings
from commsync.store.base import Store
from commsync.store.ledger import LedgerRow

Clock = Callable[[], datetime]
RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=4),
)
MAX_ATTEMPTS = 8
RECOVER_EVERY = timedelta(minutes=1)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _build(row: LedgerRow) -> Built:
    if row.message is None:
        raise RenderError("no rendered message was stored for this row")
    return Built(date_header() + row.message, row.message_id or "", "")


@dataclass
class Worker:
    """A delivery worker on one store."""

    store: Store
    settings: Settings
    env: dict[str, str]
    clock: Clock = _utcnow
    listener: Listener | None = None
    on_round: Callable[[int, DeliveryReport], None] | None = None

    def __post_init__(self) -> None:
        self.claimer = f"{hostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def _job(self) -> SendJob:
        def retry_after(attempts: int) -> datetime:
            return self.clock() + RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]

        return SendJob(
            None,
            self.settings.mail.from_address,
            _build,
            claimer=self.claimer,
            retry_after=retry_after,
            max_attempts=MAX_ATTEMPTS,
        )

    async def run(self, *, loop: bool, stop: threading.Event, poll: float = 1.0) -> DeliveryReport:
        mail = self.settings.mail
        transport = parse_transport(mail.transport, self.settings.root, self.env)
        ledger = self.store.ledger()
        runner = DueRunner(
            self._job(),
            ledger,
            transport,
            RateLimiter(mail.max_rate),
            mail.connections,
            stop.is_set,
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
                    for _ in range(max(1, int(poll / 0.05))):
                        if stop.is_set():
                            break
                        await asyncio.sleep(0.05)
        finally:
            await runner.close()
            ledger.release(self.claimer)
            ledger.close()
        return runner.report

    def run_blocking(
        self, *, loop: bool, stop: threading.Event | None = None, poll: float = 1.0
    ) -> DeliveryReport:
        return asyncio.run(self.run(loop=loop, stop=stop or threading.Event(), poll=poll))


def deliver(
    project: Project,
    *,
    loop: bool,
    stop: threading.Event | None = None,
    poll: float = 1.0,
    on_round: Callable[[int, DeliveryReport], None] | None = None,
) -> DeliveryReport:
    """`commsync deliver`: send what is due now (`loop=False`), or keep sending until `stop`."""
    settings = load_settings(project)
    with store_session(settings.store_url) as store:
        worker = Worker(store, settings, dict(project.env), on_round=on_round)
        return worker.run_blocking(loop=loop, stop=stop, poll=poll)
