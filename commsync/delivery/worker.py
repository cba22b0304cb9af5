"""The delivery worker (`commsync deliver`, and the one inside `commsync serve`).

Each round it starts the scheduled broadcasts whose `send_at` has passed (or records them missed,
past their `max_lateness`), claims due rows — system emails (delayed ones, retries) and the rows
of the broadcast sends that are the workers' — sends them, records each outcome, and closes the
broadcast sends that are done. Several workers on one or several machines can share a store:
rows are claimed with `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL (on SQLite they take turns
through its write lock), so every message is sent by one worker only. Each worker beats in the
`workers` table; one silent for `mail.worker_timeout` is gone: what it was sending becomes
uncertain, what it had claimed goes to the others. On stop, in-flight messages finish and
claimed-but-unsent rows are given back: every message is either sent or still queued.
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
from commsync.delivery.broadcast import WorkerBroadcasts
from commsync.delivery.engine import DeliveryReport, DueRunner, Listener, SendJob
from commsync.delivery.ratelimit import RateLimiter
from commsync.delivery.retry import WORKER_RETRIES, RetryPolicy
from commsync.delivery.sources import STALE_CLAIM
from commsync.delivery.transport import hostname
from commsync.delivery.transports import parse_transport
from commsync.errors import StoreError
from commsync.model import BroadcastStatus, LedgerRow
from commsync.render.message import Built, RenderError, date_header
from commsync.store.failures import describe, store_errors
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
    started_at: datetime | None = None
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
        """Running, reaching the store, and not stuck in one round for `stall` (a worker that
        has just started has until `stall` for its first round)."""
        since = self.last_round_at or self.started_at
        recent = since is not None and now - since <= stall
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
    broadcasts: WorkerBroadcasts | None = None  # builds the rows of broadcast sends
    claimer: str = field(init=False)
    health: WorkerHealth = field(default_factory=WorkerHealth)

    def __post_init__(self) -> None:
        self.claimer = f"{hostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def starting(self) -> None:
        """Counted as running from now (before its thread is scheduled: `/healthz` may ask)."""
        self.health.running, self.health.started_at = True, self.clock()

    async def run(self, *, loop: bool, stop: threading.Event, poll: float = 1.0) -> DeliveryReport:
        report = DeliveryReport()
        if not self.health.running:
            self.starting()
        backoff = 0
        try:
            while not stop.is_set():
                try:
                    await self._connected(report, loop=loop, stop=stop, poll=poll)
                    return report
                except store_errors() as exc:
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
        job = SendJob(
            None,
            mail.from_address,
            self._build,
            self.broadcasts.tokens if self.broadcasts is not None else None,
            claimer=self.claimer,
            clock=self.clock,
        )
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
        self._alive(ledger)  # seen before the first claim
        beating = asyncio.ensure_future(self._heartbeats(ledger, stop))
        try:
            await self._rounds(runner, ledger, loop=loop, stop=stop, poll=poll)
            ledger.release(self.claimer)  # stopping: what was claimed and not sent goes back
            ledger.stopped(self.claimer)
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
            await runner.close()
            _quietly(ledger.close)

    def _build(self, row: LedgerRow) -> Built:
        if row.broadcast is not None:
            if self.broadcasts is None:
                raise RenderError("this worker was started without a way to build broadcasts")
            return self.broadcasts.build(row)
        return (self.recheck or stored_message)(row)

    def _alive(self, ledger: Ledger) -> None:
        """Beat, and take over from workers that went silent."""
        ledger.heartbeat(self.claimer, hostname(), os.getpid())
        silent = datetime.now(UTC) - timedelta(seconds=self.settings.mail.worker_timeout)
        uncertain, released = ledger.recover_dead(silent)
        if uncertain or released:
            log.warning(
                "delivery worker: a worker went silent for %d s: %d of its messages uncertain, "
                "%d given to the others",
                self.settings.mail.worker_timeout,
                uncertain,
                released,
            )

    async def _heartbeats(self, ledger: Ledger, stop: threading.Event) -> None:
        interval = max(0.5, min(10.0, self.settings.mail.worker_timeout / 6))
        while not stop.is_set():
            await _idle(interval, stop)
            try:
                self._alive(ledger)
            except store_errors():  # the rounds meet the same failure and reconnect
                return

    def _schedule(self, now: datetime) -> None:
        """Start the scheduled broadcasts that are due; close the sends that are done."""
        statuses = self.settings.membership_statuses
        for started in self.store.start_due_broadcasts(now, statuses):
            if started.status == BroadcastStatus.MISSED:
                log.warning(
                    "broadcast %s missed: its send_at passed more than its max_lateness ago; "
                    "it will not be sent",
                    started.broadcast_id,
                )
            else:
                log.info(
                    "broadcast %s started: %d recipients",
                    started.broadcast_id,
                    started.recipients,
                )
        for broadcast_id in self.store.finish_worker_sends():
            log.info("broadcast %s sent", broadcast_id)

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
            self._schedule(now)
            claimed = await runner.round(now)
            if claimed:  # a send that just finished is closed at once (`deliver --once` too)
                for broadcast_id in self.store.finish_worker_sends():
                    log.info("broadcast %s sent", broadcast_id)
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
    with contextlib.suppress(*store_errors()):
        action(*args)


async def _idle(seconds: float, stop: threading.Event) -> None:
    """Wait up to `seconds`, waking early when asked to stop."""
    for _ in range(max(1, int(seconds / 0.05))):
        if stop.is_set():
            return
        await asyncio.sleep(0.05)
