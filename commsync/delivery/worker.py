"""The delivery worker (`commsync deliver`, and the one inside `commsync serve`).

It claims due system-email rows (delayed emails, retries), sends them, and records each outcome.
Several workers on one or several machines can share a store: rows are claimed with `SELECT …
FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite has one writer anyway), so every message is sent by
one worker only. On stop, in-flight messages finish and claimed-but-unsent rows are given back:
every message is either sent or still queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from commsync.errors import StoreError
from commsync.model import LedgerRow
from commsync.render.message import Built, RenderError, date_header
from commsync.store.failures import STORE_ERRORS, describe
from commsync.store.roles import Ledger, Sends

Clock = Callable[[], datetime]
RECOVER_EVERY = timedelta(minutes=1)
MAX_BACKOFF = 30  # seconds between reconnection attempts, at most
STALL = timedelta(seconds=60)  # a worker that has not reached the store for this long is unwell
log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def stored_message(row: LedgerRow) -> Built:
    """A system email's message, rendered when its event arrived; dated now."""
    if row.message is None:
        raise RenderError("no rendered message was stored for this row")
    return Built(date_header() + row.message, row.message_id or "", "")


class WorkerStore(Sends, Protocol):
    """The store roles the worker uses: its ledger."""


@dataclass
class WorkerHealth:
    """How the worker is doing, for `/healthz` and `/metrics`."""

    running: bool = False
    last_round_at: datetime | None = None  # the last round (or batch) that reached the store
    failing_since: datetime | None = None
    last_error: str | None = None
    reconnects: int = 0

    def beat(self, now: datetime) -> None:
        self.last_round_at, self.failing_since, self.last_error = now, None, None

    def failed(self, now: datetime, error: str) -> None:
        self.failing_since = self.failing_since or now
        self.last_error = error

    def healthy(self, now: datetime, stall: timedelta = STALL) -> bool:
        """Running, reaching the store, and not stuck in one round for `stall`."""
        recent = self.last_round_at is not None and now - self.last_round_at <= stall
        return self.running and self.failing_since is None and recent


class _Beat:
    """A listener that marks progress on the health, then passes progress on."""

    def __init__(self, health: WorkerHealth, clock: Clock, inner: Listener | None) -> None:
        self.health, self.clock, self.inner = health, clock, inner

    def progress(self, done: int, total: int) -> None:
        self.health.beat(self.clock())
        if self.inner is not None:
            self.inner.progress(done, total)


@dataclass
class Worker:
    """A delivery worker on one store. In a loop it survives the store going away: it backs
    off, reconnects (a new connection, never a new store) and resumes."""

    store: WorkerStore
    settings: Settings
    env: Mapping[str, str]
    clock: Clock = _utcnow
    listener: Listener | None = None
    on_round: Callable[[int, DeliveryReport], None] | None = None
    policy: RetryPolicy = WORKER_RETRIES
    # the message for a claimed row, checked against the email as it is now (events/recheck.py);
    # None: the message as its event rendered it
    recheck: Callable[[LedgerRow], Built] | None = None
    claimer: str = field(init=False)
    health: WorkerHealth = field(default_factory=WorkerHealth)

    def __post_init__(self) -> None:
        self.claimer = f"{hostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def run(self, *, loop: bool, stop: threading.Event, poll: float = 1.0) -> DeliveryReport:
        report = DeliveryReport()
        self.health.running = True
        backoff = 0
        try:
            while not stop.is_set():
                try:
                    await self._connected(report, loop=loop, stop=stop, poll=poll)
                    return report
                except STORE_ERRORS as exc:
                    backoff = self._backoff(backoff)
                    self.health.failed(self.clock(), describe(exc))
                    if not loop:
                        raise StoreError(f"the store failed: {describe(exc)}") from exc
                    log.warning(
                        "delivery worker: the store failed (%s); reconnecting in %d s",
                        describe(exc),
                        backoff,
                    )
                except Exception as exc:  # a defect: logged in full, and the worker goes on
                    backoff = self._backoff(backoff)
                    self.health.failed(self.clock(), f"{type(exc).__name__}: {exc}")
                    if not loop:
                        raise
                    log.exception("delivery worker failed; restarting in %d s", backoff)
                await _idle(backoff, stop)
                self.health.reconnects += 1
            return report
        finally:
            self.health.running = False

    def _backoff(self, last: int) -> int:
        """1 s after a failure that ended a healthy spell, then doubling up to MAX_BACKOFF."""
        return 1 if self.health.failing_since is None else min(last * 2 or 1, MAX_BACKOFF)

    async def _connected(
        self, report: DeliveryReport, *, loop: bool, stop: threading.Event, poll: float
    ) -> None:
        """Rounds on one connection to the store, until stopped (or one round, without loop)."""
        mail = self.settings.mail
        transport = parse_transport(mail.transport, self.settings.root, self.env)
        ledger = self.store.ledger()
        if self.health.reconnects:  # what the last connection left half done
            released, uncertain = ledger.abandon(self.claimer)
            log.warning(
                "delivery worker reconnected: %d claimed messages given back, %d uncertain",
                released,
                uncertain,
            )
        build = self.recheck or stored_message
        job = SendJob(None, mail.from_address, build, claimer=self.claimer, clock=self.clock)
        beat = _Beat(self.health, self.clock, self.listener)
        limiter = RateLimiter(mail.max_rate)
        runner = DueRunner(
            job,
            ledger,
            transport,
            limiter,
            mail.connections,
            stop.is_set,
            self.policy,
            beat,
            report,
        )
        try:
            await self._rounds(runner, ledger, loop=loop, stop=stop, poll=poll)
            ledger.release(self.claimer)  # stopping: what was claimed and not sent goes back
        finally:
            await runner.close()
            _quietly(ledger.close)

    async def _rounds(
        self, runner: DueRunner, ledger: Ledger, *, loop: bool, stop: threading.Event, poll: float
    ) -> None:
        recovered_at: datetime | None = None
        while not stop.is_set():
            now = self.clock()
            if recovered_at is None or now - recovered_at >= RECOVER_EVERY:
                # messages a vanished worker was sending: uncertain, never sent twice
                ledger.recover_stale(now - STALE_CLAIM)
                recovered_at = now
            claimed = await runner.round(now)
            self.health.beat(self.clock())
            if claimed and self.on_round is not None:
                self.on_round(claimed, runner.report)
            if not loop:
                return
            if not claimed:
                await _idle(poll, stop)

    def run_blocking(
        self, *, loop: bool, stop: threading.Event | None = None, poll: float = 1.0
    ) -> DeliveryReport:
        return asyncio.run(self.run(loop=loop, stop=stop or threading.Event(), poll=poll))


def _quietly(action: Callable[..., object], *args: object) -> None:
    """Clean-up on a connection that may be broken: a failure here changes nothing."""
    with contextlib.suppress(*STORE_ERRORS):
        action(*args)


async def _idle(seconds: float, stop: threading.Event) -> None:
    """Wait up to `seconds`, waking early when asked to stop."""
    for _ in range(max(1, int(seconds / 0.05))):
        if stop.is_set():
            return
        await asyncio.sleep(0.05)
